//! guest-fsfreeze-status, -freeze, -freeze-list, -thaw, and guest-fstrim.
