//! The command table: every command exactly once, in qemu-ga's registration order, with
//! its policy on the same row. guest-info (reverse order), `-b help` / `-a help`, the
//! allow/block filter and the frozen filter are all derived from it.
//!
//! qemu-ga's registration order on Linux, for inserting new rows at the right place:
//! guest-sync-delimited, guest-sync, guest-ping, guest-get-time, guest-set-time,
//! guest-info, guest-shutdown, guest-file-open, guest-file-close, guest-file-read,
//! guest-file-write, guest-file-seek, guest-file-flush, guest-fsfreeze-status,
//! guest-fsfreeze-freeze, guest-fsfreeze-freeze-list, guest-fsfreeze-thaw,
//! guest-fstrim, guest-suspend-disk, guest-suspend-ram, guest-suspend-hybrid,
//! guest-network-get-interfaces, guest-get-vcpus, guest-set-vcpus, guest-get-disks,
//! guest-get-fsinfo, guest-set-user-password, guest-get-memory-blocks,
//! guest-set-memory-blocks, guest-get-memory-block-info, guest-exec-status,
//! guest-exec, guest-get-host-name, guest-get-users, guest-get-timezone,
//! guest-get-osinfo, guest-ssh-get-authorized-keys, guest-ssh-add-authorized-keys,
//! guest-ssh-remove-authorized-keys, guest-get-diskstats, guest-get-cpustats,
//! guest-get-load, guest-network-get-route.

use qga_proto::cmds::core::*;
use qga_proto::cmds::exec::*;
use qga_proto::cmds::file::*;
use qga_proto::cmds::freeze::*;
use qga_proto::cmds::network::*;
use qga_proto::cmds::power::*;
use qga_proto::cmds::ssh::*;
use qga_proto::cmds::storage::*;
use qga_proto::cmds::system::*;

use crate::command;
use crate::dispatch::CommandDef;

pub mod core;
pub mod exec;
pub mod file;
pub mod fsfreeze;
pub mod hotplug;
pub mod network;
pub mod power;
pub mod ssh;
pub mod storage;
pub mod system;

/// Every command, in registration order.
pub static COMMANDS: &[CommandDef] = &[
    command!(GuestSyncDelimitedArgs => core::sync_delimited).frozen_ok(),
    command!(GuestSyncArgs => core::sync).frozen_ok(),
    command!(GuestPingArgs => core::ping).frozen_ok(),
    command!(GuestGetTimeArgs => core::get_time),
    command!(GuestSetTimeArgs => power::set_time),
    command!(GuestInfoArgs => core::info).frozen_ok(),
    command!(GuestShutdownArgs => power::shutdown).no_success_response(),
    command!(GuestFileOpenArgs => file::open),
    command!(GuestFileCloseArgs => file::close),
    command!(GuestFileReadArgs => file::read),
    command!(GuestFileWriteArgs => file::write),
    command!(GuestFileSeekArgs => file::seek),
    command!(GuestFileFlushArgs => file::flush),
    command!(GuestFsfreezeStatusArgs => fsfreeze::status).frozen_ok(),
    command!(GuestFsfreezeFreezeArgs => fsfreeze::freeze),
    command!(GuestFsfreezeFreezeListArgs => fsfreeze::freeze_list),
    command!(GuestFsfreezeThawArgs => fsfreeze::thaw).frozen_ok(),
    command!(GuestFstrimArgs => fsfreeze::fstrim),
    command!(GuestSuspendDiskArgs => power::suspend_disk).no_success_response(),
    command!(GuestSuspendRamArgs => power::suspend_ram).no_success_response(),
    command!(GuestSuspendHybridArgs => power::suspend_hybrid).no_success_response(),
    command!(GuestNetworkGetInterfacesArgs => network::get_interfaces),
    command!(GuestGetVcpusArgs => system::get_vcpus),
    command!(GuestSetVcpusArgs => hotplug::set_vcpus),
    command!(GuestGetDisksArgs => storage::get_disks),
    command!(GuestGetFsinfoArgs => storage::get_fsinfo),
    command!(GuestSetUserPasswordArgs => power::set_user_password),
    command!(GuestGetMemoryBlocksArgs => system::get_memory_blocks),
    command!(GuestSetMemoryBlocksArgs => hotplug::set_memory_blocks),
    command!(GuestGetMemoryBlockInfoArgs => system::get_memory_block_info),
    command!(GuestExecStatusArgs => exec::status),
    command!(GuestExecArgs => exec::exec),
    command!(GuestGetHostNameArgs => system::get_host_name),
    command!(GuestGetUsersArgs => system::get_users),
    command!(GuestGetTimezoneArgs => system::get_timezone),
    command!(GuestGetOsinfoArgs => system::get_osinfo),
    command!(GuestSshGetAuthorizedKeysArgs => ssh::get_authorized_keys),
    command!(GuestSshAddAuthorizedKeysArgs => ssh::add_authorized_keys),
    command!(GuestSshRemoveAuthorizedKeysArgs => ssh::remove_authorized_keys),
    command!(GuestGetDiskstatsArgs => storage::get_diskstats),
    command!(GuestGetCpustatsArgs => system::get_cpustats),
    command!(GuestGetLoadArgs => system::get_load),
    command!(GuestNetworkGetRouteArgs => network::get_route),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_kebab_case() {
        for (i, c) in COMMANDS.iter().enumerate() {
            assert!(c.name.starts_with("guest-"), "{}", c.name);
            assert!(
                c.name.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'),
                "{}",
                c.name
            );
            assert!(
                COMMANDS[..i].iter().all(|o| o.name != c.name),
                "duplicate {}",
                c.name
            );
        }
    }

    #[test]
    fn frozen_set_is_qemu_gas_six() {
        let frozen: Vec<_> = COMMANDS
            .iter()
            .filter(|c| c.frozen_ok)
            .map(|c| c.name)
            .collect();
        for name in &frozen {
            assert!(
                [
                    "guest-ping",
                    "guest-info",
                    "guest-sync",
                    "guest-sync-delimited",
                    "guest-fsfreeze-status",
                    "guest-fsfreeze-thaw"
                ]
                .contains(name),
                "{name} must not run while frozen"
            );
        }
    }

    #[test]
    fn every_command_rejects_unknown_arguments_before_acting() {
        let agent = crate::agent::tests::test_agent();
        let mut args = qga_proto::Dict::new();
        args.insert("zz-bogus", qga_proto::Value::Int(1));
        for c in COMMANDS {
            let err = (c.run)(&agent, &args).expect_err(c.name);
            // Commands with mandatory members report the first missing one instead.
            assert!(
                err.desc() == "Parameter 'zz-bogus' is unexpected"
                    || err.desc().ends_with("' is missing"),
                "{}: {}",
                c.name,
                err.desc()
            );
        }
    }
}
