//! The typed commands the CLI sends: the agent's own wire types from `qga_proto::cmds`,
//! so client and agent can never disagree on a member's name or type.

pub use qga_proto::cmds::core::*;
pub use qga_proto::cmds::exec::*;
pub use qga_proto::cmds::file::*;
pub use qga_proto::cmds::freeze::*;
pub use qga_proto::cmds::network::*;
pub use qga_proto::cmds::power::*;
pub use qga_proto::cmds::ssh::*;
pub use qga_proto::cmds::storage::*;
pub use qga_proto::cmds::system::*;
