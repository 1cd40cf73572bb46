//! guest-exec and guest-exec-status.
