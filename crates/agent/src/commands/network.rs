//! guest-network-get-interfaces and guest-network-get-route. The OS access is in
//! `crate::sys::netlink`, `crate::sys::netif`, `crate::sys::procfs` and
//! `crate::sys::route`.

use std::os::fd::OwnedFd;
use std::path::Path;

use qga_proto::cmds::network::*;

use crate::agent::Agent;
use crate::error::{Error, Result};
use crate::log::Level;
use crate::sys::{netif, netlink, procfs, route};

const PROC_NET_DEV: &str = "/proc/net/dev";

/// guest-network-get-interfaces: `getifaddrs()` grouped by name, with the MAC address
/// (`SIOCGIFHWADDR`) and, for interfaces that have an address, the `/proc/net/dev`
/// counters.
///
/// The same list, addresses and counters come from one rtnetlink link dump and one
/// address dump on a socket kept open (`sys::netlink`), which is what `getifaddrs()`
/// reads too; the old sources remain for what the dumps do not settle (a name that is
/// no link's) and the whole old path runs when netlink fails.
pub fn get_interfaces(
    agent: &Agent,
    _: GuestNetworkGetInterfacesArgs,
) -> Result<Vec<GuestNetworkInterface>> {
    match netlink::dump() {
        Ok(dump) => from_dump(agent, &dump),
        Err(e) => {
            agent.log.log(
                Level::Debug,
                &format!("netlink interface dump failed, using getifaddrs: {e}"),
            );
            from_getifaddrs(agent)
        }
    }
}

/// The reply from the netlink dumps.
fn from_dump(agent: &Agent, dump: &netlink::Dump) -> Result<Vec<GuestNetworkInterface>> {
    let mut ioctl = HwAddrIoctl::default();
    let hw = |name: &[u8]| match dump.hw_addr(name) {
        Some(mac) => Ok(Some(mac)),
        None => ioctl.get(agent, name),
    };
    // The old reply has no counters at all when /proc/net/dev cannot be read.
    let mut readable: Option<bool> = None;
    let mut dev = ProcNetDev::default();
    let stats = |name: &[u8]| {
        // /proc/net/dev has no line for a name with a ':' (an address label).
        if name.contains(&b':') {
            return None;
        }
        let ok = *readable.get_or_insert_with(|| {
            // SAFETY: a NUL-terminated path; access has no other preconditions.
            unsafe { libc::access(c"/proc/net/dev".as_ptr(), libc::R_OK) == 0 }
        });
        if !ok {
            return None;
        }
        match dump.link(name).and_then(|l| l.stats64.as_ref()) {
            Some(s) => {
                let c = netlink::proc_net_dev_counters(s);
                Some(GuestNetworkInterfaceStat {
                    rx_bytes: c[0],
                    rx_packets: c[1],
                    rx_errs: c[2],
                    rx_dropped: c[3],
                    tx_bytes: c[4],
                    tx_packets: c[5],
                    tx_errs: c[6],
                    tx_dropped: c[7],
                })
            }
            None => dev.get(name),
        }
    };
    netif::build_interfaces(&dump.entries, hw, stats)
}

/// The reply from `getifaddrs()`, `SIOCGIFHWADDR` and `/proc/net/dev`.
fn from_getifaddrs(agent: &Agent) -> Result<Vec<GuestNetworkInterface>> {
    let entries = netif::getifaddrs().map_err(|e| Error::errno("getifaddrs failed", &e))?;
    let mut ioctl = HwAddrIoctl::default();
    let hw = |name: &[u8]| ioctl.get(agent, name);
    let mut dev = ProcNetDev::default();
    let stats = |name: &[u8]| dev.get(name);
    netif::build_interfaces(&entries, hw, stats)
}

/// `SIOCGIFHWADDR` on one socket for all the ioctls of a call (qemu-ga opens one per
/// lookup), made on first use.
#[derive(Default)]
struct HwAddrIoctl {
    sock: Option<OwnedFd>,
}

impl HwAddrIoctl {
    fn get(&mut self, agent: &Agent, name: &[u8]) -> Result<Option<[u8; 6]>> {
        let fd = match &self.sock {
            Some(fd) => fd,
            None => self.sock.insert(
                netif::ioctl_socket().map_err(|e| Error::errno("failed to create socket", &e))?,
            ),
        };
        match netif::hw_addr(fd, name) {
            Ok(mac) => Ok(Some(mac)),
            Err(e) => {
                let level = if e.raw_os_error() == Some(libc::EADDRNOTAVAIL) {
                    Level::Debug
                } else {
                    Level::Warning
                };
                let msg = format!(
                    "failed to get MAC address of {}: {}",
                    String::from_utf8_lossy(name),
                    crate::error::strerror(e.raw_os_error().unwrap_or(0))
                );
                agent.log.log(level, &msg);
                Ok(None)
            }
        }
    }
}

/// `/proc/net/dev`, read once per call when the first interface with an address needs
/// it (qemu-ga re-reads it for each such interface).
#[derive(Default)]
struct ProcNetDev {
    text: Option<Option<Vec<u8>>>,
}

impl ProcNetDev {
    fn get(&mut self, name: &[u8]) -> Option<GuestNetworkInterfaceStat> {
        let text = self
            .text
            .get_or_insert_with(|| procfs::read(PROC_NET_DEV).ok());
        procfs::net_dev_stats(text.as_deref()?, name)
    }
}

/// guest-network-get-route: `/proc/net/route` then `/proc/net/ipv6_route`.
pub fn get_route(_: &Agent, _: GuestNetworkGetRouteArgs) -> Result<Vec<GuestNetworkRoute>> {
    route::read_routes(Path::new(route::IPV4_ROUTE), Path::new(route::IPV6_ROUTE))
}
