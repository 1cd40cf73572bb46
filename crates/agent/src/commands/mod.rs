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
use crate::policy::audit;

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
    command!(Protocol: GuestSyncDelimitedArgs => core::sync_delimited).frozen_ok(),
    command!(Protocol: GuestSyncArgs => core::sync).frozen_ok(),
    command!(Protocol: GuestPingArgs => core::ping).frozen_ok(),
    command!(Info: GuestGetTimeArgs => core::get_time),
    command!(Change: GuestSetTimeArgs => power::set_time),
    command!(Protocol: GuestInfoArgs => core::info).frozen_ok(),
    command!(Change: GuestShutdownArgs => power::shutdown).no_success_response(),
    command!(File: GuestFileOpenArgs => file::open),
    command!(File: GuestFileCloseArgs => file::close),
    command!(File: GuestFileReadArgs => file::read).audit_ok_when(audit::never),
    command!(File: GuestFileWriteArgs => file::write).audit_ok_when(audit::never),
    command!(File: GuestFileSeekArgs => file::seek).audit_ok_when(audit::never),
    command!(File: GuestFileFlushArgs => file::flush).audit_ok_when(audit::never),
    command!(Info: GuestFsfreezeStatusArgs => fsfreeze::status).frozen_ok(),
    command!(Change: GuestFsfreezeFreezeArgs => fsfreeze::freeze),
    command!(Change: GuestFsfreezeFreezeListArgs => fsfreeze::freeze_list),
    command!(Change: GuestFsfreezeThawArgs => fsfreeze::thaw).frozen_ok(),
    command!(Change: GuestFstrimArgs => fsfreeze::fstrim),
    command!(Change: GuestSuspendDiskArgs => power::suspend_disk).no_success_response(),
    command!(Change: GuestSuspendRamArgs => power::suspend_ram).no_success_response(),
    command!(Change: GuestSuspendHybridArgs => power::suspend_hybrid).no_success_response(),
    command!(Info: GuestNetworkGetInterfacesArgs => network::get_interfaces),
    command!(Info: GuestGetVcpusArgs => system::get_vcpus),
    command!(Change: GuestSetVcpusArgs => hotplug::set_vcpus),
    command!(Info: GuestGetDisksArgs => storage::get_disks),
    command!(Info: GuestGetFsinfoArgs => storage::get_fsinfo),
    command!(Credentials: GuestSetUserPasswordArgs => power::set_user_password),
    command!(Info: GuestGetMemoryBlocksArgs => system::get_memory_blocks),
    command!(Change: GuestSetMemoryBlocksArgs => hotplug::set_memory_blocks),
    command!(Info: GuestGetMemoryBlockInfoArgs => system::get_memory_block_info),
    command!(Exec: GuestExecStatusArgs => exec::status).audit_ok_when(audit::exited),
    command!(Exec: GuestExecArgs => exec::exec),
    command!(Info: GuestGetHostNameArgs => system::get_host_name),
    command!(Info: GuestGetUsersArgs => system::get_users),
    command!(Info: GuestGetTimezoneArgs => system::get_timezone),
    command!(Info: GuestGetOsinfoArgs => system::get_osinfo),
    command!(Credentials: GuestSshGetAuthorizedKeysArgs => ssh::get_authorized_keys),
    command!(Credentials: GuestSshAddAuthorizedKeysArgs => ssh::add_authorized_keys),
    command!(Credentials: GuestSshRemoveAuthorizedKeysArgs => ssh::remove_authorized_keys),
    command!(Info: GuestGetDiskstatsArgs => storage::get_diskstats),
    command!(Info: GuestGetCpustatsArgs => system::get_cpustats),
    command!(Info: GuestGetLoadArgs => system::get_load),
    command!(Info: GuestNetworkGetRouteArgs => network::get_route),
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
            let err = (c.run)(&agent, &mut args.clone()).expect_err(c.name);
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
