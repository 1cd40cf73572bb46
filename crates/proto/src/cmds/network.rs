//! guest-network-get-interfaces and guest-network-get-route.
