//! One arguments struct per command (it *is* the command: it carries the wire name and
//! the return type), and the types the commands return, grouped by family. Member
//! order inside each struct is QAPI schema order: the serializer's output order and
//! the order of argument errors depend on it.

pub mod core;
pub mod exec;
pub mod file;
pub mod freeze;
pub mod network;
pub mod power;
pub mod ssh;
pub mod storage;
pub mod system;
