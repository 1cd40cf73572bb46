//! guest-fsfreeze-* and guest-fstrim.

/// Freeze bookkeeping beyond the agent's frozen flag.
#[derive(Default)]
pub struct FreezeState {}
