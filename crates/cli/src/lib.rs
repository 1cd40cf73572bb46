//! qga: a host-side client for QEMU guest agents (the library behind the `qga` CLI).
//!
//! A [`Client`] talks to one agent, either on a unix socket (QEMU's
//! `org.qemu.guest_agent.0` chardev, or an agent run with `-m unix-listen`) or through
//! libvirt (`virsh qemu-agent-command`). Connecting performs the documented handshake:
//! a 0xFF byte to reset the agent's parser, then guest-sync-delimited with a random id,
//! discarding everything (stale replies included) up to the matching reply.
//!
//! Calls are typed with the wire types shared with the agent: every arguments struct
//! implements [`qga_proto::Command`], which names the command and its return type.
//! Replies are decoded leniently (unknown members from newer agents are ignored).
//!
//! ```no_run
//! use std::time::Duration;
//! use qga_cli::wire::{GuestExecArgs, GuestExecStatusArgs, GuestFileReadArgs};
//! use qga_cli::{Client, Error};
//!
//! fn main() -> Result<(), Error> {
//!     let mut client = Client::connect("/run/qga/web1.sock", Duration::from_secs(5))?;
//!
//!     // Typed call: `GuestExecArgs` is `guest-exec`, returning `GuestExec`.
//!     let started = client.call(GuestExecArgs {
//!         path: "uname".into(),
//!         arg: Some(vec!["-r".into()]),
//!         ..Default::default()
//!     })?;
//!     let status = client.call(GuestExecStatusArgs { pid: started.pid })?;
//!     println!("exited: {}", status.exited);
//!
//!     // Or let the library poll and decode the output.
//!     let out = client.exec(
//!         &qga_cli::ExecRequest { program: "id".into(), ..Default::default() },
//!         Some(Duration::from_secs(30)),
//!     )?;
//!     print!("{}", String::from_utf8_lossy(&out.stdout));
//!
//!     // Pipelined: several requests in flight, replies received in order.
//!     let handle = client.open("/etc/hostname", "r")?;
//!     let first = client.send(&GuestFileReadArgs { handle, count: Some(4096) })?;
//!     let second = client.send(&GuestFileReadArgs { handle, count: Some(4096) })?;
//!     let (a, b) = (client.receive(first)?, client.receive(second)?);
//!     println!("{} + {} bytes", a.count, b.count);
//!     client.close(handle)?;
//!
//!     // Anything else, raw: the reply comes back as received, errors included.
//!     let reply = client.call_raw(&qga_proto::Value::Dict({
//!         let mut d = qga_proto::Dict::new();
//!         d.insert("execute", qga_proto::Value::str("guest-get-osinfo"));
//!         d
//!     }))?;
//!     println!("{}", String::from_utf8_lossy(&reply.raw));
//!     Ok(())
//! }
//! ```

pub mod b64;
mod client;
mod conn;
pub mod error;
mod exec;
mod libvirt;
pub mod sha256;
mod transfer;
mod upload;
pub mod wire;

pub use client::{Client, Pending, Reply, DEFAULT_TIMEOUT};
pub use error::{Error, Result};
pub use exec::{next_poll_delay, ExecOutput, ExecRequest, DEFAULT_GUEST_PATH};
pub use libvirt::LIBVIRT_MAX_REQUEST;
pub use transfer::{Transfer, TransferOptions, Verified};
