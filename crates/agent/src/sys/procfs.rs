//! `/proc/stat` (guest-get-cpustats) and `/proc/net/dev` (interface statistics), parsed
//! from the file's bytes exactly as qemu-ga's `sscanf` loops read them.

use qga_proto::cmds::network::GuestNetworkInterfaceStat;
use qga_proto::cmds::system::GuestLinuxCpuStats;

use super::cscan::{atoi, is_glib_space, Scanner};

/// A whole `/proc` file. `std::fs::read` sizes its buffer from the file's size,
/// which `/proc` reports as 0, and so reads 32, 32, 64, 128... bytes at a time: one
/// large buffer reads a mount table in two calls instead of ten.
pub fn read(path: &str) -> std::io::Result<Vec<u8>> {
    read_from(&mut std::fs::File::open(path)?)
}

/// The rest of an open `/proc` file, as [`read`].
pub fn read_from(f: &mut std::fs::File) -> std::io::Result<Vec<u8>> {
    use std::io::Read as _;
    let mut data = vec![0; 16 << 10];
    let mut len = 0;
    loop {
        if len == data.len() {
            data.resize(len * 2, 0);
        }
        match f.read(&mut data[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    data.truncate(len);
    Ok(data)
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`), the unit of `/proc/stat`.
pub fn clk_tck() -> u64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let v = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    // qemu-ga divides by the int it gets; a non-positive value never happens on Linux.
    u64::try_from(v).ok().filter(|&v| v > 0).unwrap_or(100)
}

/// The `cpu<N>` lines of `/proc/stat` as qemu-ga reports them:
/// - the aggregate `cpu` line and non-`cpu` lines are skipped;
/// - a `cpu<N>` line with fewer than four counters ends the list;
/// - counters are converted to milliseconds as `ticks * 1000 / clk_tck` (unsigned long);
/// - iowait needs 5 counters, irq and softirq 6, steal 8, guest 9, guestnice 10.
///
/// With exactly 6 counters qemu-ga reports a `softirq` it never read (an uninitialized
/// variable); the reference binary reports 0 there, and so does this.
///
/// The flag is true when a short `cpu<N>` line ended the list (qemu-ga logs that).
pub fn parse_cpu_stats(text: &[u8], clk_tck: u64) -> (Vec<GuestLinuxCpuStats>, bool) {
    let tck = clk_tck.max(1);
    let ms = |ticks: u64| ticks.wrapping_mul(1000) / tck;
    let mut out = Vec::new();
    for line in text.split(|&b| b == b'\n') {
        // user, nice, system, idle, iowait, irq, softirq, steal, guest, guest_nice
        let mut v = [0u64; 10];
        let mut sc = Scanner::new(line);
        if sc.at_end() {
            continue; // sscanf returned EOF
        }
        let Some(name) = sc.word() else { continue };
        let mut fields = 1;
        for slot in v.iter_mut() {
            match sc.ulong(10) {
                Some(x) => {
                    *slot = x;
                    fields += 1;
                }
                None => break,
            }
        }
        if !name.starts_with(b"cpu") || name.len() == 3 {
            continue;
        }
        if fields < 5 {
            return (out, true);
        }
        let opt = |present: bool, x: u64| present.then(|| ms(x));
        out.push(GuestLinuxCpuStats {
            cpu: i64::from(atoi(&name[3..])),
            user: ms(v[0]),
            nice: ms(v[1]),
            system: ms(v[2]),
            idle: ms(v[3]),
            iowait: opt(fields > 5, v[4]),
            irq: opt(fields > 6, v[5]),
            softirq: opt(fields > 6, v[6]),
            steal: opt(fields > 8, v[7]),
            guest: opt(fields > 9, v[8]),
            guestnice: opt(fields > 10, v[9]),
        });
    }
    (out, false)
}

/// The counters of interface `name` from `/proc/net/dev`: the first line whose text
/// before its first `:` (leading whitespace removed) is exactly `name` and that has 16
/// numbers after the colon (`g_strchug` strips the whitespace, which excludes `\v`). Fields 1-4 and 9-12, read as `long long`. `None` when no
/// line matches (names containing `:`, such as address labels, never match).
pub fn net_dev_stats(text: &[u8], name: &[u8]) -> Option<GuestNetworkInterfaceStat> {
    for line in text.split(|&b| b == b'\n') {
        let Some(start) = line.iter().position(|&b| !is_glib_space(b)) else {
            continue;
        };
        let line = &line[start..];
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        if &line[..colon] != name {
            continue;
        }
        let mut sc = Scanner::new(&line[colon + 1..]);
        let mut n = [0i64; 16];
        if !n
            .iter_mut()
            .all(|slot| sc.long(10).map(|x| *slot = x).is_some())
        {
            continue;
        }
        return Some(GuestNetworkInterfaceStat {
            rx_bytes: n[0] as u64,
            rx_packets: n[1] as u64,
            rx_errs: n[2] as u64,
            rx_dropped: n[3] as u64,
            tx_bytes: n[8] as u64,
            tx_packets: n[9] as u64,
            tx_errs: n[10] as u64,
            tx_dropped: n[11] as u64,
        });
    }
    None
}
