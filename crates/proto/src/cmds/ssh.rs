//! guest-ssh-get-authorized-keys, -add-authorized-keys, -remove-authorized-keys.
