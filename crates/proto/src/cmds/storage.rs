//! guest-get-fsinfo, guest-get-disks and guest-get-diskstats.
