//! `qga`: talk to a QEMU guest agent from the host.

fn main() {
    eprintln!("qga: under construction");
    std::process::exit(2);
}
