//! Interfaces for guest-network-get-interfaces: the `getifaddrs()` list, the MAC address
//! (`SIOCGIFHWADDR`) and the assembly of qemu-ga's reply from them. The assembly takes
//! the address list and the two lookups as parameters, so tests feed it recorded lists
//! (bonds, VLANs, IPv6-only links) and `/proc/net/dev` text.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use qga_proto::cmds::network::{
    GuestIpAddress, GuestIpAddressType, GuestNetworkInterface, GuestNetworkInterfaceStat,
};

/// The address of one `getifaddrs()` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IfAddr {
    /// AF_INET, with its netmask when the entry has one.
    V4([u8; 4], Option<[u8; 4]>),
    /// AF_INET6, with its netmask when the entry has one.
    V6([u8; 16], Option<[u8; 16]>),
    /// AF_PACKET, any other family, or no address at all.
    Other,
}

/// One `getifaddrs()` entry: the interface (or address label) and its address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IfEntry {
    /// `ifa_name`, e.g. `eth0` or the label `eth0:1`.
    pub name: Vec<u8>,
    /// `ifa_addr` / `ifa_netmask`.
    pub addr: IfAddr,
}

/// The live `getifaddrs()` list, in its order (AF_PACKET entries first).
pub fn getifaddrs() -> io::Result<Vec<IfEntry>> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: `head` is a valid out-pointer; on success the list is freed below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut out = Vec::new();
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned, alive until freeifaddrs.
        let ifa = unsafe { &*cur };
        let name = if ifa.ifa_name.is_null() {
            Vec::new()
        } else {
            // SAFETY: ifa_name is a NUL-terminated string owned by the list.
            unsafe { CStr::from_ptr(ifa.ifa_name) }.to_bytes().to_vec()
        };
        // SAFETY: both pointers are null or point to sockaddrs owned by the list whose
        // size matches their sa_family.
        let addr = unsafe { decode_addr(ifa.ifa_addr, ifa.ifa_netmask) };
        out.push(IfEntry { name, addr });
        cur = ifa.ifa_next;
    }
    // SAFETY: `head` came from getifaddrs and is freed exactly once.
    unsafe { libc::freeifaddrs(head) };
    Ok(out)
}

/// Reads an address and its netmask. The netmask is read with the address's family,
/// as qemu-ga does.
///
/// # Safety
/// Each pointer is null or points to a sockaddr as large as its family requires.
unsafe fn decode_addr(addr: *const libc::sockaddr, mask: *const libc::sockaddr) -> IfAddr {
    if addr.is_null() {
        return IfAddr::Other;
    }
    // SAFETY: non-null and points to a sockaddr (caller's contract).
    let family = i32::from(unsafe { (*addr).sa_family });
    match family {
        libc::AF_INET => {
            let get = |p: *const libc::sockaddr| {
                // SAFETY: an AF_INET entry's sockaddrs are sockaddr_in (caller's contract).
                let sin = unsafe { &*(p as *const libc::sockaddr_in) };
                sin.sin_addr.s_addr.to_ne_bytes()
            };
            IfAddr::V4(get(addr), (!mask.is_null()).then(|| get(mask)))
        }
        libc::AF_INET6 => {
            let get = |p: *const libc::sockaddr| {
                // SAFETY: an AF_INET6 entry's sockaddrs are sockaddr_in6 (caller's contract).
                let sin6 = unsafe { &*(p as *const libc::sockaddr_in6) };
                sin6.sin6_addr.s6_addr
            };
            IfAddr::V6(get(addr), (!mask.is_null()).then(|| get(mask)))
        }
        _ => IfAddr::Other,
    }
}

/// A socket for interface ioctls (qemu-ga uses an AF_INET stream socket).
pub fn ioctl_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain syscall; the returned descriptor is owned below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The first six bytes of the interface's hardware address (`SIOCGIFHWADDR`; the name
/// is cut to 15 bytes as `pstrcpy` into `ifr_name` does).
pub fn hw_addr(sock: &OwnedFd, name: &[u8]) -> io::Result<[u8; 6]> {
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, &src) in ifr
        .ifr_name
        .iter_mut()
        .zip(name.iter().take(libc::IFNAMSIZ - 1))
    {
        *dst = src as libc::c_char;
    }
    // SAFETY: SIOCGIFHWADDR reads ifr_name and writes the ifreq we own.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFHWADDR as _, &mut ifr) } == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: on success the kernel filled ifru_hwaddr.
    let data = unsafe { ifr.ifr_ifru.ifru_hwaddr.sa_data };
    let mut mac = [0u8; 6];
    for (m, &d) in mac.iter_mut().zip(data.iter()) {
        *m = d as u8;
    }
    Ok(mac)
}

/// glibc's `inet_ntop(AF_INET6)`: the longest run (first on ties) of two or more zero
/// groups becomes `::`, groups in lowercase hex, and `::a.b.c.d` / `::ffff:a.b.c.d`
/// for IPv4-compatible and IPv4-mapped addresses.
pub fn inet6_ntop(a: &[u8; 16]) -> String {
    use std::fmt::Write;
    let words: [u16; 8] = std::array::from_fn(|i| u16::from_be_bytes([a[2 * i], a[2 * i + 1]]));
    let (mut best, mut cur): ((usize, usize), Option<(usize, usize)>) = ((0, 0), None);
    for (i, &w) in words.iter().enumerate() {
        if w == 0 {
            let c = cur.get_or_insert((i, 0));
            c.1 += 1;
            if c.1 > best.1 {
                best = *c;
            }
        } else {
            cur = None;
        }
    }
    let run = (best.1 >= 2).then_some(best);
    let mut out = String::with_capacity(40);
    for (i, &w) in words.iter().enumerate() {
        if let Some((base, len)) = run {
            if i >= base && i < base + len {
                if i == base {
                    out.push(':');
                }
                continue;
            }
        }
        if i != 0 {
            out.push(':');
        }
        if i == 6 && run.is_some_and(|(b, l)| b == 0 && (l == 6 || (l == 5 && words[5] == 0xffff)))
        {
            let _ = write!(out, "{}.{}.{}.{}", a[12], a[13], a[14], a[15]);
            return out;
        }
        let _ = write!(out, "{w:x}");
    }
    if run.is_some_and(|(b, l)| b + l == 8) {
        out.push(':');
    }
    out
}

/// `%02x:%02x:%02x:%02x:%02x:%02x`
pub fn mac_text(m: &[u8; 6]) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}

/// Builds qemu-ga's interface list from `getifaddrs()` entries:
/// - interfaces in order of first sighting, one per distinct name;
/// - `hardware_addr(name)` is asked for every entry until it gives an address (an
///   `Err` aborts the whole reply, `Ok(None)` leaves the address out);
/// - each AF_INET/AF_INET6 entry appends an address with the netmask's bit count;
/// - `stats(name)` is asked once an interface has an address and until it answers.
pub fn build_interfaces<E>(
    entries: &[IfEntry],
    mut hardware_addr: impl FnMut(&[u8]) -> Result<Option<[u8; 6]>, E>,
    mut stats: impl FnMut(&[u8]) -> Option<GuestNetworkInterfaceStat>,
) -> Result<Vec<GuestNetworkInterface>, E> {
    let mut out: Vec<GuestNetworkInterface> = Vec::new();
    let mut names: Vec<&[u8]> = Vec::new();
    for e in entries {
        let idx = match names.iter().position(|n| *n == e.name.as_slice()) {
            Some(i) => i,
            None => {
                names.push(&e.name);
                out.push(GuestNetworkInterface {
                    name: String::from_utf8_lossy(&e.name).into_owned(),
                    ..Default::default()
                });
                out.len() - 1
            }
        };
        let info = &mut out[idx];
        if info.hardware_address.is_none() {
            info.hardware_address = hardware_addr(&e.name)?.as_ref().map(mac_text);
        }
        let (ip_address, ip_address_type, prefix) = match &e.addr {
            IfAddr::V4(a, mask) => (
                format!("{}.{}.{}.{}", a[0], a[1], a[2], a[3]),
                GuestIpAddressType::Ipv4,
                mask.map_or(0, |m| u32::from_ne_bytes(m).count_ones()),
            ),
            IfAddr::V6(a, mask) => (
                inet6_ntop(a),
                GuestIpAddressType::Ipv6,
                mask.map_or(0, |m| u128::from_ne_bytes(m).count_ones()),
            ),
            IfAddr::Other => continue,
        };
        info.ip_addresses
            .get_or_insert_with(Vec::new)
            .push(GuestIpAddress {
                ip_address,
                ip_address_type,
                prefix: i64::from(prefix),
            });
        if info.statistics.is_none() {
            info.statistics = stats(&e.name);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inet6_ntop_matches_glibc() {
        extern "C" {
            fn inet_ntop(af: i32, src: *const u8, dst: *mut u8, size: u32) -> *const u8;
        }
        let glibc = |a: &[u8; 16]| {
            let mut buf = [0u8; 64];
            // SAFETY: a 16-byte address and a 64-byte buffer, as inet_ntop(AF_INET6) needs.
            let p = unsafe { inet_ntop(10, a.as_ptr(), buf.as_mut_ptr(), 64) };
            assert!(!p.is_null());
            let n = buf.iter().position(|&b| b == 0).unwrap();
            String::from_utf8(buf[..n].to_vec()).unwrap()
        };
        // Every pattern of zero/non-zero groups, with two group values, plus IPv4 forms.
        let mut seed = 0x1234_5678_u32;
        for mask in 0u32..256 {
            for alt in 0..3 {
                let mut a = [0u8; 16];
                for g in 0..8 {
                    if mask & (1 << g) != 0 {
                        seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                        let v: u16 = match alt {
                            0 => 1,
                            1 => 0xffff,
                            _ => (seed >> 8) as u16 | 1,
                        };
                        a[2 * g..2 * g + 2].copy_from_slice(&v.to_be_bytes());
                    }
                }
                assert_eq!(inet6_ntop(&a), glibc(&a), "{a:?}");
            }
        }
    }
}
