//! qga: a host-side client for QEMU guest agents (library part).
