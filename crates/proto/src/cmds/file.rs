//! guest-file-open, -close, -read, -write, -seek, -flush.
