//! guest-network-get-interfaces and guest-network-get-route.

use crate::{qapi_command, qapi_enum, qapi_struct};

qapi_struct! {
    /// guest-network-get-interfaces: the interfaces with their addresses.
    pub struct GuestNetworkGetInterfacesArgs {}
}
qapi_command!(
    GuestNetworkGetInterfacesArgs,
    "guest-network-get-interfaces",
    Vec<GuestNetworkInterface>
);

qapi_enum! {
    /// Address family of a GuestIpAddress.
    pub enum GuestIpAddressType {
        /// IPv4
        Ipv4 = "ipv4",
        /// IPv6
        Ipv6 = "ipv6",
    }
}

/// `qapi_struct!` derives `Default`, which needs one for every member type.
impl Default for GuestIpAddressType {
    fn default() -> Self {
        GuestIpAddressType::Ipv4
    }
}

qapi_struct! {
    /// One address of an interface.
    pub struct GuestIpAddress {
        /// `inet_ntop` text (no `%scope`).
        pub ip_address: String = "ip-address",
        /// Family.
        pub ip_address_type: GuestIpAddressType = "ip-address-type",
        /// Number of one bits in the netmask.
        pub prefix: i64 = "prefix",
    }
}

qapi_struct! {
    /// Counters of an interface (`/proc/net/dev`).
    pub struct GuestNetworkInterfaceStat {
        /// Received bytes.
        pub rx_bytes: u64 = "rx-bytes",
        /// Received packets.
        pub rx_packets: u64 = "rx-packets",
        /// Receive errors.
        pub rx_errs: u64 = "rx-errs",
        /// Dropped on receive.
        pub rx_dropped: u64 = "rx-dropped",
        /// Sent bytes.
        pub tx_bytes: u64 = "tx-bytes",
        /// Sent packets.
        pub tx_packets: u64 = "tx-packets",
        /// Send errors.
        pub tx_errs: u64 = "tx-errs",
        /// Dropped on send.
        pub tx_dropped: u64 = "tx-dropped",
    }
}

qapi_struct! {
    /// One network interface.
    pub struct GuestNetworkInterface {
        /// Interface name (or address label such as `eth0:1`).
        pub name: String = "name",
        /// MAC address, lowercase `xx:xx:xx:xx:xx:xx`.
        pub hardware_address: Option<String> = "hardware-address",
        /// Addresses, in getifaddrs order; absent when there are none.
        pub ip_addresses: Option<Vec<GuestIpAddress>> = "ip-addresses",
        /// Counters; only for interfaces with an address.
        pub statistics: Option<GuestNetworkInterfaceStat> = "statistics",
    }
}

qapi_struct! {
    /// guest-network-get-route: the IPv4 and IPv6 routing tables.
    pub struct GuestNetworkGetRouteArgs {}
}
qapi_command!(
    GuestNetworkGetRouteArgs,
    "guest-network-get-route",
    Vec<GuestNetworkRoute>
);

qapi_struct! {
    /// One route, from `/proc/net/route` (version 4) or `/proc/net/ipv6_route` (6).
    pub struct GuestNetworkRoute {
        /// Interface.
        pub iface: String = "iface",
        /// Destination address.
        pub destination: String = "destination",
        /// Metric.
        pub metric: i64 = "metric",
        /// IPv4 gateway.
        pub gateway: Option<String> = "gateway",
        /// IPv4 netmask.
        pub mask: Option<String> = "mask",
        /// IPv4 initial round-trip time.
        pub irtt: Option<i64> = "irtt",
        /// Route flags.
        pub flags: Option<u64> = "flags",
        /// Reference count.
        pub refcnt: Option<i64> = "refcnt",
        /// Use count.
        pub use_: Option<i64> = "use",
        /// IPv4 TCP window.
        pub window: Option<i64> = "window",
        /// IPv4 MTU.
        pub mtu: Option<i64> = "mtu",
        /// IPv6 destination prefix length, as a decimal string.
        pub desprefixlen: Option<String> = "desprefixlen",
        /// IPv6 source address.
        pub source: Option<String> = "source",
        /// IPv6 source prefix length, as a decimal string.
        pub srcprefixlen: Option<String> = "srcprefixlen",
        /// IPv6 next hop.
        pub nexthop: Option<String> = "nexthop",
        /// 4 or 6.
        pub version: i64 = "version",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::qapi::ToQapi;

    use crate::value::keys;

    /// Appendix A of the protocol reference: the key orders qemu-ga emits.
    #[test]
    fn key_orders_match_appendix_a() {
        let ip = GuestIpAddress {
            ip_address: "::1".into(),
            ip_address_type: GuestIpAddressType::Ipv6,
            prefix: 128,
        };
        assert_eq!(
            keys(&ip.to_qapi()),
            ["ip-address-type", "ip-address", "prefix"]
        );
        let stat = GuestNetworkInterfaceStat::default();
        assert_eq!(
            keys(&stat.to_qapi()),
            [
                "tx-packets",
                "tx-errs",
                "rx-bytes",
                "rx-dropped",
                "rx-packets",
                "rx-errs",
                "tx-bytes",
                "tx-dropped"
            ]
        );
        let iface = GuestNetworkInterface {
            name: "lo".into(),
            hardware_address: Some("00:00:00:00:00:00".into()),
            ip_addresses: Some(vec![ip]),
            statistics: Some(stat),
        };
        assert_eq!(
            keys(&iface.to_qapi()),
            ["name", "ip-addresses", "statistics", "hardware-address"]
        );
        let s = |x: &str| Some(x.to_string());
        let route = GuestNetworkRoute {
            iface: "eth0".into(),
            destination: "::".into(),
            metric: 1,
            gateway: s("g"),
            mask: s("m"),
            irtt: Some(0),
            flags: Some(0),
            refcnt: Some(0),
            use_: Some(0),
            window: Some(0),
            mtu: Some(0),
            desprefixlen: s("0"),
            source: s("::"),
            srcprefixlen: s("0"),
            nexthop: s("::"),
            version: 6,
        };
        assert_eq!(
            keys(&route.to_qapi()),
            [
                "flags",
                "source",
                "metric",
                "refcnt",
                "window",
                "version",
                "nexthop",
                "iface",
                "destination",
                "desprefixlen",
                "irtt",
                "gateway",
                "srcprefixlen",
                "use",
                "mtu",
                "mask"
            ]
        );
    }
}
