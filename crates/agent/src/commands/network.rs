//! guest-network-get-interfaces and guest-network-get-route. The OS access is in
//! `crate::sys::netif`, `crate::sys::procfs` and `crate::sys::route`.

use std::os::fd::OwnedFd;
use std::path::Path;

use qga_proto::cmds::network::*;

use crate::agent::Agent;
use crate::error::{Error, Result};
use crate::log::Level;
use crate::sys::{netif, procfs, route};

/// guest-network-get-interfaces: `getifaddrs()` grouped by name, with the MAC address
/// and, for interfaces that have an address, the `/proc/net/dev` counters.
pub fn get_interfaces(
    agent: &Agent,
    _: GuestNetworkGetInterfacesArgs,
) -> Result<Vec<GuestNetworkInterface>> {
    let entries = netif::getifaddrs().map_err(|e| Error::errno("getifaddrs failed", &e))?;
    // One socket for all the ioctls (qemu-ga opens one per lookup), made on first use.
    let mut sock: Option<OwnedFd> = None;
    let hw = |name: &[u8]| -> Result<Option<[u8; 6]>> {
        let fd = match &sock {
            Some(fd) => fd,
            None => sock.insert(
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
    };
    // /proc/net/dev is read once per call, when the first interface with an address
    // needs it (qemu-ga re-reads it for each such interface).
    let mut dev: Option<Option<Vec<u8>>> = None;
    let stats = |name: &[u8]| {
        let text = dev.get_or_insert_with(|| crate::sys::procfs::read("/proc/net/dev").ok());
        procfs::net_dev_stats(text.as_deref()?, name)
    };
    netif::build_interfaces(&entries, hw, stats)
}

/// guest-network-get-route: `/proc/net/route` then `/proc/net/ipv6_route`.
pub fn get_route(_: &Agent, _: GuestNetworkGetRouteArgs) -> Result<Vec<GuestNetworkRoute>> {
    route::read_routes(Path::new(route::IPV4_ROUTE), Path::new(route::IPV6_ROUTE))
}
