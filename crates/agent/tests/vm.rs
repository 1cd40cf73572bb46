//! Tests inside a real guest: the agent on a virtio-serial port under QEMU (TCG),
//! driven from the host through the chardev socket (scripts/vm). Commands that change
//! the machine are only ever tested here.

mod common;

use common::{static_agent, vm_lock, Vm};

#[test]
fn vm_agent_answers_on_virtio_serial() {
    let _g = vm_lock();
    let vm = Vm::boot(&static_agent(), &[]);
    let mut c = vm.connect();
    assert_eq!(c.cmd(r#"{"execute":"guest-ping"}"#), r#"{"return": {}}"#);
    let info = c.cmd(r#"{"execute":"guest-info"}"#);
    assert!(info.contains(r#""name": "guest-sync-delimited""#), "{info}");
    // The host leaving and coming back: the same port, the parser state intact.
    c.send(br#"{"execute":"guest-sync","arguments":"#);
    drop(c);
    let mut c = vm.connect(); // the handshake's 0xFF discards the half request
    assert_eq!(
        c.cmd(r#"{"execute":"guest-sync","arguments":{"id":77}}"#),
        r#"{"return": 77}"#
    );
}
