//! Checked uploads whose guest-side sha256 runs piece by piece during the transfer,
//! through the library, against our agent and the reference qemu-ga 10.0.2. Files
//! only under temporary directories; guest-exec runs `sh -c 'dd | sha256sum'` there.

mod common;

use std::time::Duration;

use common::{binary_data, Agent, Which};
use qga_cli::{Client, TransferOptions, Verified};

fn upload(c: &mut Client, data: &[u8], dest: &str, opts: TransferOptions) -> Verified {
    let mut acked = 0;
    let (t, how) = c
        .upload_checked(&mut &data[..], dest, opts, &mut |n| acked = n)
        .unwrap();
    assert_eq!(t.bytes, data.len() as u64);
    assert_eq!(t.guest_size, Some(data.len() as u64));
    assert_eq!(t.sha256, qga_cli::sha256::hex(data));
    assert_eq!(acked, data.len() as u64);
    assert_eq!(std::fs::read(dest).unwrap(), data, "{dest}");
    how
}

fn checked_in_pieces(w: Which) {
    let a = Agent::start(w, &[]);
    let mut c = Client::connect(&a.sock, Duration::from_secs(20)).unwrap();
    let dest = a.dir.join("up.bin").display().to_string();
    let small = |chunk: usize, piece: u64| TransferOptions {
        chunk,
        window: 3,
        piece,
    };
    // Four whole 256 KiB pieces and a partial fifth, read back in 256 KiB dd blocks.
    let data = binary_data((1 << 20) + 100_003);
    let how = upload(&mut c, &data, &dest, small(64 << 10, 256 << 10));
    assert_eq!(how, Verified::GuestSha256Pieces(5));
    // Pieces that end exactly at the end of the file: no empty last piece.
    let how = upload(
        &mut c,
        &data[..512 << 10],
        &dest,
        small(64 << 10, 256 << 10),
    );
    assert_eq!(how, Verified::GuestSha256Pieces(2));
    // 1 MiB dd blocks, several per piece.
    let data = binary_data((5 << 20) + 7);
    let how = upload(&mut c, &data, &dest, small(256 << 10, 2 << 20));
    assert_eq!(how, Verified::GuestSha256Pieces(3));
    // Chunks that do not tile a piece, and an empty file: the whole-file check.
    let how = upload(&mut c, &data, &dest, small(300_000, 2 << 20));
    assert_eq!(how, Verified::GuestSha256);
    let how = upload(&mut c, &[], &dest, small(64 << 10, 256 << 10));
    assert_eq!(how, Verified::GuestSha256);
    // The connection is in step after all that.
    let h = c.open(&dest, "r").unwrap();
    c.close(h).unwrap();
}

#[test]
fn reference_checked_in_pieces() {
    checked_in_pieces(Which::Reference)
}

#[test]
fn ours_checked_in_pieces() {
    checked_in_pieces(Which::Ours)
}
