//! guest-fsfreeze-status, -freeze, -freeze-list, -thaw, and guest-fstrim.

use crate::{qapi_command, qapi_enum, qapi_struct};

qapi_enum! {
    /// Whether the guest's filesystems are frozen, as the agent last left them.
    pub enum GuestFsfreezeStatus {
        /// Not frozen.
        Thawed = "thawed",
        /// Frozen by guest-fsfreeze-freeze (or -freeze-list).
        Frozen = "frozen",
    }
}

qapi_struct! {
    /// guest-fsfreeze-status: the agent's frozen state (its own flag, not the kernel's).
    pub struct GuestFsfreezeStatusArgs {}
}
qapi_command!(
    GuestFsfreezeStatusArgs,
    "guest-fsfreeze-status",
    GuestFsfreezeStatus
);

qapi_struct! {
    /// guest-fsfreeze-freeze: freeze every freezable mounted filesystem; returns how
    /// many were frozen.
    pub struct GuestFsfreezeFreezeArgs {}
}
qapi_command!(GuestFsfreezeFreezeArgs, "guest-fsfreeze-freeze", i64);

qapi_struct! {
    /// guest-fsfreeze-freeze-list: freeze the listed mount points (all when absent);
    /// returns how many were frozen.
    pub struct GuestFsfreezeFreezeListArgs {
        /// Mount points to freeze, compared exactly with the mount list; others are
        /// ignored.
        pub mountpoints: Option<Vec<String>> = "mountpoints",
    }
}
qapi_command!(
    GuestFsfreezeFreezeListArgs,
    "guest-fsfreeze-freeze-list",
    i64
);

qapi_struct! {
    /// guest-fsfreeze-thaw: thaw every mounted filesystem; returns how many were thawed.
    pub struct GuestFsfreezeThawArgs {}
}
qapi_command!(GuestFsfreezeThawArgs, "guest-fsfreeze-thaw", i64);

qapi_struct! {
    /// guest-fstrim: discard unused blocks on every mounted filesystem.
    pub struct GuestFstrimArgs {
        /// Minimum contiguous free range to discard, in bytes (0 when absent).
        pub minimum: Option<i64> = "minimum",
    }
}
qapi_command!(GuestFstrimArgs, "guest-fstrim", GuestFilesystemTrimResponse);

qapi_struct! {
    /// The outcome of guest-fstrim for one mount point.
    pub struct GuestFilesystemTrimResult {
        /// Mount point.
        pub path: String = "path",
        /// Bytes the kernel reported as trimmed.
        pub trimmed: Option<i64> = "trimmed",
        /// The minimum extent length as the kernel adjusted it.
        pub minimum: Option<i64> = "minimum",
        /// Why this mount point was not trimmed.
        pub error: Option<String> = "error",
    }
}

qapi_struct! {
    /// The reply of guest-fstrim.
    pub struct GuestFilesystemTrimResponse {
        /// One result per mount point, in reverse mount order.
        pub paths: Vec<GuestFilesystemTrimResult> = "paths",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ToQapi;

    #[test]
    fn trim_result_key_order_is_appendix_a() {
        let r = GuestFilesystemTrimResult {
            path: "/".into(),
            trimmed: Some(256216375296),
            minimum: Some(1),
            error: Some("x".into()),
        };
        assert_eq!(
            String::from_utf8(r.to_qapi().to_json()).unwrap(),
            r#"{"minimum": 1, "path": "/", "trimmed": 256216375296, "error": "x"}"#
        );
        let resp = GuestFilesystemTrimResponse {
            paths: vec![GuestFilesystemTrimResult {
                path: "/boot".into(),
                error: Some("trim not supported".into()),
                ..Default::default()
            }],
        };
        assert_eq!(
            String::from_utf8(resp.to_qapi().to_json()).unwrap(),
            r#"{"paths": [{"path": "/boot", "error": "trim not supported"}]}"#
        );
    }

    #[test]
    fn status_is_a_bare_string() {
        assert_eq!(
            GuestFsfreezeStatus::Frozen.to_qapi().to_json(),
            b"\"frozen\""
        );
        assert_eq!(GuestFsfreezeStatus::Thawed.as_str(), "thawed");
    }
}
