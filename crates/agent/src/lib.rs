//! qga-agent: a drop-in replacement for qemu-ga, the QEMU guest agent, on Linux.
//!
//! - [`config`]: qemu-ga's command line and config file;
//! - [`agent`]: state shared by the handlers (filters, frozen state, handles);
//! - [`dispatch`]: request envelope checks, policy and argument decoding;
//! - [`commands`]: the command table and one module per command family;
//! - [`sys`]: syscalls and `/proc`/`/sys` parsers;
//! - [`policy`]: command categories, profiles, audit log and hardening;
//! - [`log`]: qemu-ga's log format, syslog and the audit sink.

pub mod agent;
pub mod channel;
pub mod commands;
pub mod config;
pub mod dispatch;
pub mod error;
pub mod log;
pub mod policy;
pub mod server;
pub mod sys;
