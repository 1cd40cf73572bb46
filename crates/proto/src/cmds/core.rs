//! The protocol's own commands: guest-sync, guest-sync-delimited, guest-ping,
//! guest-info, guest-get-time.

use crate::qapi::Empty;
use crate::{qapi_command, qapi_struct};

qapi_struct! {
    /// guest-sync: echo `id` back, so a client can skip stale replies.
    pub struct GuestSyncArgs {
        /// Any integer; returned unchanged.
        pub id: i64 = "id",
    }
}
qapi_command!(GuestSyncArgs, "guest-sync", i64);

qapi_struct! {
    /// guest-sync-delimited: like guest-sync, but the reply is preceded by a raw 0xFF
    /// byte, so a client can find it in a stream that may hold stale bytes.
    pub struct GuestSyncDelimitedArgs {
        /// Any integer; returned unchanged.
        pub id: i64 = "id",
    }
}
qapi_command!(GuestSyncDelimitedArgs, "guest-sync-delimited", i64);

qapi_struct! {
    /// guest-ping: check that the agent is alive.
    pub struct GuestPingArgs {}
}
qapi_command!(GuestPingArgs, "guest-ping", Empty);

qapi_struct! {
    /// guest-get-time: the guest's wall-clock time in nanoseconds since the epoch.
    pub struct GuestGetTimeArgs {}
}
qapi_command!(GuestGetTimeArgs, "guest-get-time", i64);

qapi_struct! {
    /// guest-info: the agent's version and its commands.
    pub struct GuestInfoArgs {}
}
qapi_command!(GuestInfoArgs, "guest-info", GuestAgentInfo);

qapi_struct! {
    /// One command in guest-info's list.
    pub struct GuestAgentCommandInfo {
        /// Command name.
        pub name: String = "name",
        /// Whether it may be called now (block/allow lists, frozen state).
        pub enabled: bool = "enabled",
        /// False for the commands that send no reply on success.
        pub success_response: bool = "success-response",
    }
}

qapi_struct! {
    /// The reply of guest-info.
    pub struct GuestAgentInfo {
        /// The agent's version (qemu-ga reports the QEMU version here).
        pub version: String = "version",
        /// Every command, in reverse registration order.
        pub supported_commands: Vec<GuestAgentCommandInfo> = "supported_commands",
    }
}
