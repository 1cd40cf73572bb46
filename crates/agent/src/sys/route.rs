//! The routing tables for guest-network-get-route: `/proc/net/route` and
//! `/proc/net/ipv6_route`, parsed from their bytes with qemu-ga's `sscanf` formats and
//! field conversions.

use std::path::Path;

use qga_proto::cmds::network::GuestNetworkRoute;

use super::cscan::Scanner;
use super::netif::inet6_ntop;
use crate::error::{Error, Result};

/// The IPv4 table.
pub const IPV4_ROUTE: &str = "/proc/net/route";
/// The IPv6 table.
pub const IPV6_ROUTE: &str = "/proc/net/ipv6_route";

/// Both tables, IPv4 first. A table that cannot be opened makes the whole reply the
/// error `open("<file>"): <strerror>` (when both fail, qemu-ga sets a second error on
/// top of the first and aborts; the first error is returned here).
pub fn read_routes(ipv4: &Path, ipv6: &Path) -> Result<Vec<GuestNetworkRoute>> {
    let read = |p: &Path| {
        std::fs::read(p).map_err(|e| Error::errno(format!("open(\"{}\")", p.display()), &e))
    };
    let v4 = read(ipv4);
    let v6 = read(ipv6);
    let mut out = Vec::new();
    parse_ipv4_routes(&v4?, &mut out);
    parse_ipv6_routes(&v6?, &mut out);
    Ok(out)
}

/// `%u.%u.%u.%u` of the kernel's host-order hex, low byte first.
fn ipv4_text(v: u32) -> String {
    let b = v.to_le_bytes();
    format!("{}.{}.{}.{}", b[0], b[1], b[2], b[3])
}

/// `/proc/net/route` rows after the header line, each read as
/// `"%s %X %X %x %d %d %d %X %d %d %d"`; rows with fewer fields are skipped.
pub fn parse_ipv4_routes(text: &[u8], out: &mut Vec<GuestNetworkRoute>) {
    for line in text.split(|&b| b == b'\n').skip(1) {
        let mut sc = Scanner::new(line);
        let Some(iface) = sc.word() else { continue };
        let (Some(dest), Some(gw), Some(flags)) = (sc.hex32(), sc.hex32(), sc.hex32()) else {
            continue;
        };
        let (Some(refcnt), Some(use_), Some(metric)) = (sc.int(), sc.int(), sc.int()) else {
            continue;
        };
        let Some(mask) = sc.hex32() else { continue };
        let (Some(mtu), Some(window), Some(irtt)) = (sc.int(), sc.int(), sc.int()) else {
            continue;
        };
        out.push(GuestNetworkRoute {
            iface: String::from_utf8_lossy(iface).into_owned(),
            destination: ipv4_text(dest),
            metric: i64::from(metric),
            gateway: Some(ipv4_text(gw)),
            mask: Some(ipv4_text(mask)),
            irtt: Some(i64::from(irtt)),
            flags: Some(u64::from(flags)),
            refcnt: Some(i64::from(refcnt)),
            use_: Some(i64::from(use_)),
            window: Some(i64::from(window)),
            mtu: Some(i64::from(mtu)),
            version: 4,
            ..Default::default()
        });
    }
}

/// 32 hex digits (read pairwise as `%02hhx`) as an IPv6 address in `inet_ntop` form.
/// `None` when a pair does not start with a hex digit or the text is too short.
fn ipv6_text(hex: &[u8]) -> Option<String> {
    let mut addr = [0u8; 16];
    for (i, byte) in addr.iter_mut().enumerate() {
        let pair = hex.get(i * 2..)?;
        let digits = pair
            .iter()
            .take(2)
            .take_while(|b| b.is_ascii_hexdigit())
            .count();
        if digits == 0 {
            return None;
        }
        let s = std::str::from_utf8(&pair[..digits]).ok()?;
        *byte = u8::from_str_radix(s, 16).ok()?;
    }
    Some(inet6_ntop(&addr))
}

/// `/proc/net/ipv6_route` rows (no header), each read as
/// `"%32s %x %32s %x %32s %x %x %x %x %s"` into `int`s: metric `ffffffff` is -1 and
/// flags with the top bit set are sign-extended into the uint64 member, as qemu-ga does.
/// Prefix lengths are hex in the file and become decimal strings.
pub fn parse_ipv6_routes(text: &[u8], out: &mut Vec<GuestNetworkRoute>) {
    for line in text.split(|&b| b == b'\n') {
        let mut sc = Scanner::new(line);
        let Some(dest) = sc.word_max(32) else {
            continue;
        };
        let Some(dest_len) = sc.hex32() else { continue };
        let Some(src) = sc.word_max(32) else { continue };
        let Some(src_len) = sc.hex32() else { continue };
        let Some(next_hop) = sc.word_max(32) else {
            continue;
        };
        let (Some(metric), Some(refcnt), Some(use_), Some(flags)) =
            (sc.hex32(), sc.hex32(), sc.hex32(), sc.hex32())
        else {
            continue;
        };
        let Some(iface) = sc.word() else { continue };
        let Some(destination) = ipv6_text(dest) else {
            continue;
        };
        out.push(GuestNetworkRoute {
            iface: String::from_utf8_lossy(iface).into_owned(),
            destination,
            source: ipv6_text(src),
            nexthop: ipv6_text(next_hop),
            desprefixlen: Some((dest_len as i32).to_string()),
            srcprefixlen: Some((src_len as i32).to_string()),
            metric: i64::from(metric as i32),
            flags: Some(i64::from(flags as i32) as u64),
            refcnt: Some(i64::from(refcnt as i32)),
            use_: Some(i64::from(use_ as i32)),
            version: 6,
            ..Default::default()
        });
    }
}
