//! guest-file-open, -close, -read, -write, -seek, -flush.

/// The open file handles, shared by every client connection.
#[derive(Default)]
pub struct Handles {}
