//! guest-exec and guest-exec-status.

/// Children started by guest-exec and their results until the host collects them.
#[derive(Default)]
pub struct Children {}
