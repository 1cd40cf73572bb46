//! guest-shutdown, guest-suspend-disk, -ram, -hybrid, guest-set-time,
//! guest-set-user-password, guest-set-vcpus and guest-set-memory-blocks: the commands
//! that change the guest's state.
