//! guest-get-host-name, -timezone, -osinfo, -users, -vcpus, -memory-blocks,
//! -memory-block-info, -cpustats, -load.
