//! guest-sync, guest-sync-delimited, guest-ping, guest-get-time, guest-info.

use qga_proto::cmds::core::*;
use qga_proto::Empty;

use crate::agent::{Agent, VERSION};
use crate::error::Result;

/// guest-sync: returns `id`.
pub fn sync(_: &Agent, args: GuestSyncArgs) -> Result<i64> {
    Ok(args.id)
}

/// guest-sync-delimited: returns `id`; the dispatcher writes the 0xFF in front.
pub fn sync_delimited(_: &Agent, args: GuestSyncDelimitedArgs) -> Result<i64> {
    Ok(args.id)
}

/// guest-ping: nothing to do.
pub fn ping(agent: &Agent, _: GuestPingArgs) -> Result<Empty> {
    agent.log.audit("guest-ping called");
    Ok(Empty)
}

/// guest-get-time: wall-clock microseconds times 1000, as qemu-ga (`g_get_real_time`).
pub fn get_time(_: &Agent, _: GuestGetTimeArgs) -> Result<i64> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Ok(i64::try_from(now.as_micros()).unwrap_or(i64::MAX / 1000) * 1000)
}

/// guest-info: every command in reverse registration order, with its current state.
pub fn info(agent: &Agent, _: GuestInfoArgs) -> Result<GuestAgentInfo> {
    let supported_commands = super::COMMANDS
        .iter()
        .rev()
        .map(|c| GuestAgentCommandInfo {
            name: c.name.to_string(),
            enabled: agent.is_enabled(c),
            success_response: c.success_response,
        })
        .collect();
    Ok(GuestAgentInfo {
        version: VERSION.to_string(),
        supported_commands,
    })
}
