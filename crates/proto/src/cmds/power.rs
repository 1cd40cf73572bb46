//! guest-shutdown, guest-suspend-disk, -ram, -hybrid, guest-set-time,
//! guest-set-user-password, guest-set-vcpus and guest-set-memory-blocks: the commands
//! that change the guest's state.

use crate::qapi::Empty;
use crate::{qapi_command, qapi_enum, qapi_struct};

qapi_struct! {
    /// guest-shutdown: power down, halt or reboot the guest. Sends no reply on success.
    pub struct GuestShutdownArgs {
        /// `powerdown` (default), `halt` or `reboot`; a plain string, checked by the
        /// command itself.
        pub mode: Option<String> = "mode",
    }
}
qapi_command!(GuestShutdownArgs, "guest-shutdown", Empty);

qapi_struct! {
    /// guest-set-time: set the system clock to `time` (ns since the epoch) and copy it
    /// to the RTC, or without `time` set the system clock from the RTC.
    pub struct GuestSetTimeArgs {
        /// Nanoseconds since the epoch.
        pub time: Option<i64> = "time",
    }
}
qapi_command!(GuestSetTimeArgs, "guest-set-time", Empty);

qapi_struct! {
    /// guest-suspend-disk: hibernate (suspend to disk). Sends no reply on success.
    pub struct GuestSuspendDiskArgs {}
}
qapi_command!(GuestSuspendDiskArgs, "guest-suspend-disk", Empty);

qapi_struct! {
    /// guest-suspend-ram: suspend to RAM. Sends no reply on success.
    pub struct GuestSuspendRamArgs {}
}
qapi_command!(GuestSuspendRamArgs, "guest-suspend-ram", Empty);

qapi_struct! {
    /// guest-suspend-hybrid: save to disk, then suspend to RAM. Sends no reply on
    /// success.
    pub struct GuestSuspendHybridArgs {}
}
qapi_command!(GuestSuspendHybridArgs, "guest-suspend-hybrid", Empty);

qapi_struct! {
    /// One logical CPU (also returned by guest-get-vcpus).
    pub struct GuestLogicalProcessor {
        /// The CPU number (`cpu<N>` in sysfs).
        pub logical_id: i64 = "logical-id",
        /// Whether it is (or should be) online.
        pub online: bool = "online",
        /// Whether it can be offlined; always filled on output, ignored on input.
        pub can_offline: Option<bool> = "can-offline",
    }
}

qapi_struct! {
    /// guest-set-vcpus: bring CPUs online or offline; returns how many entries were
    /// processed before the first failure.
    pub struct GuestSetVcpusArgs {
        /// The wanted states, processed in order.
        pub vcpus: Vec<GuestLogicalProcessor> = "vcpus",
    }
}
qapi_command!(GuestSetVcpusArgs, "guest-set-vcpus", i64);

qapi_struct! {
    /// guest-set-user-password: set a user's password through `chpasswd`.
    pub struct GuestSetUserPasswordArgs {
        /// The account name.
        pub username: String = "username",
        /// The new password, base64-encoded.
        pub password: String = "password",
        /// Whether the password is already crypted (`chpasswd -e`).
        pub crypted: bool = "crypted",
    }
}
qapi_command!(GuestSetUserPasswordArgs, "guest-set-user-password", Empty);

qapi_struct! {
    /// One memory block (also returned by guest-get-memory-blocks).
    pub struct GuestMemoryBlock {
        /// The block number (`memory<N>` in sysfs).
        pub phys_index: u64 = "phys-index",
        /// Whether it is (or should be) online.
        pub online: bool = "online",
        /// Whether it can be offlined; ignored on input.
        pub can_offline: Option<bool> = "can-offline",
    }
}

qapi_enum! {
    /// How one memory block request went.
    pub enum GuestMemoryBlockResponseType {
        /// Done, or already in the wanted state.
        Success = "success",
        /// No such block.
        NotFound = "not-found",
        /// The guest cannot do this (no sysfs memory directory, no `state` file).
        OperationNotSupported = "operation-not-supported",
        /// The block exists but the change failed.
        OperationFailed = "operation-failed",
    }
}

// The enum comes from a macro that does not derive Default.
#[allow(clippy::derivable_impls)]
impl Default for GuestMemoryBlockResponseType {
    fn default() -> Self {
        Self::Success
    }
}

qapi_struct! {
    /// The result for one memory block of guest-set-memory-blocks.
    pub struct GuestMemoryBlockResponse {
        /// The block asked for.
        pub phys_index: u64 = "phys-index",
        /// What happened.
        pub response: GuestMemoryBlockResponseType = "response",
        /// The errno behind a failure (sometimes present on success, as in qemu-ga).
        pub error_code: Option<i64> = "error-code",
    }
}

qapi_struct! {
    /// guest-set-memory-blocks: bring memory blocks online or offline; one response
    /// per request, in order.
    pub struct GuestSetMemoryBlocksArgs {
        /// The wanted states.
        pub mem_blks: Vec<GuestMemoryBlock> = "mem-blks",
    }
}
qapi_command!(
    GuestSetMemoryBlocksArgs,
    "guest-set-memory-blocks",
    Vec<GuestMemoryBlockResponse>
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::qapi::{decode_args, ToQapi};
    use crate::value::{Dict, Value};

    use crate::value::keys;

    #[test]
    fn key_order_matches_appendix_a() {
        let cpu = GuestLogicalProcessor {
            logical_id: 1,
            online: true,
            can_offline: Some(true),
        };
        assert_eq!(
            keys(&cpu.to_qapi()),
            ["online", "can-offline", "logical-id"]
        );
        let blk = GuestMemoryBlock {
            phys_index: 1,
            online: true,
            can_offline: Some(false),
        };
        assert_eq!(
            keys(&blk.to_qapi()),
            ["online", "can-offline", "phys-index"]
        );
        let rsp = GuestMemoryBlockResponse {
            phys_index: 999999,
            response: GuestMemoryBlockResponseType::NotFound,
            error_code: Some(2),
        };
        assert_eq!(
            rsp.to_qapi().to_json(),
            br#"{"response": "not-found", "error-code": 2, "phys-index": 999999}"#
        );
    }

    #[test]
    fn decoding_paths_and_uint64_wrap() {
        let mut blk = Dict::new();
        blk.insert("phys-index", Value::Int(-1));
        blk.insert("online", Value::Bool(true));
        let mut args = Dict::new();
        args.insert("mem-blks", Value::List(vec![Value::Dict(blk)]));
        let a: GuestSetMemoryBlocksArgs = decode_args(&args).unwrap();
        assert_eq!(a.mem_blks[0].phys_index, u64::MAX);

        let mut cpu = Dict::new();
        cpu.insert("logical-id", Value::Int(0));
        let mut args = Dict::new();
        args.insert("vcpus", Value::List(vec![Value::Dict(cpu)]));
        let e = decode_args::<GuestSetVcpusArgs>(&args).unwrap_err();
        assert_eq!(e.0, "Parameter 'vcpus[0].online' is missing");

        let mut args = Dict::new();
        args.insert("mode", Value::Int(1));
        let e = decode_args::<GuestShutdownArgs>(&args).unwrap_err();
        assert_eq!(e.0, "Invalid parameter type for 'mode', expected: string");

        let mut args = Dict::new();
        args.insert("time", Value::Double(1.0));
        let e = decode_args::<GuestSetTimeArgs>(&args).unwrap_err();
        assert_eq!(e.0, "Invalid parameter type for 'time', expected: integer");

        let mut args = Dict::new();
        args.insert("username", Value::str("u"));
        args.insert("password", Value::str("cA=="));
        let e = decode_args::<GuestSetUserPasswordArgs>(&args).unwrap_err();
        assert_eq!(e.0, "Parameter 'crypted' is missing");
    }
}
