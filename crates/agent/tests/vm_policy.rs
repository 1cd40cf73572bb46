//! `--harden` with the commands that change the machine, for real, inside throwaway
//! test VMs (scripts/vm): fsfreeze, fstrim, set-time, vCPU and memory hotplug,
//! passwords and ssh keys answer under each hardened profile exactly as they do from
//! an unhardened agent, and the read-only profile's information commands answer the
//! same under its seccomp filter.

mod common;

use common::{static_agent, vm_lock, Vm};
use qga_agent::commands::COMMANDS;
use qga_agent::policy::{Category, Profile};

/// Requests whose replies do not depend on timing (numbers are normalised anyway),
/// touching every capability the `change` and `credentials` categories keep.
const CHANGES: &[&str] = &[
    r#"{"execute":"guest-fsfreeze-status"}"#,
    r#"{"execute":"guest-fsfreeze-freeze-list","arguments":{"mountpoints":["/mnt/data"]}}"#,
    r#"{"execute":"guest-fsfreeze-status"}"#,
    r#"{"execute":"guest-fsfreeze-thaw"}"#,
    r#"{"execute":"guest-fsfreeze-status"}"#,
    r#"{"execute":"guest-fstrim"}"#,
    r#"{"execute":"guest-set-time","arguments":{"time":1700000000123456789}}"#,
    r#"{"execute":"guest-set-time"}"#,
    r#"{"execute":"guest-set-vcpus","arguments":{"vcpus":[{"logical-id":1,"online":false}]}}"#,
    r#"{"execute":"guest-set-vcpus","arguments":{"vcpus":[{"logical-id":1,"online":true}]}}"#,
    r#"{"execute":"guest-set-memory-blocks","arguments":{"mem-blks":[{"phys-index":0,"online":true}]}}"#,
    r#"{"execute":"guest-set-user-password","arguments":{"username":"alice","password":"cGFzcw==","crypted":false}}"#,
    r#"{"execute":"guest-ssh-add-authorized-keys","arguments":{"username":"alice","keys":["algo key1 c","algo key2 c"]}}"#,
    r#"{"execute":"guest-ssh-remove-authorized-keys","arguments":{"username":"alice","keys":["algo key1 c"]}}"#,
    r#"{"execute":"guest-ssh-get-authorized-keys","arguments":{"username":"alice"}}"#,
];

fn run(vm: &Vm, requests: &[String]) -> Vec<String> {
    let mut c = vm.connect();
    // eth0's IPv6 link-local address appears only once duplicate address detection
    // finished (a second or two after boot): wait for it, so both guests compare alike.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !c
        .cmd(r#"{"execute":"guest-network-get-interfaces"}"#)
        .contains("fe80::")
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    requests
        .iter()
        .map(|r| common::zero_numbers(&c.cmd(r)))
        .collect()
}

fn command_of(request: &str) -> &'static qga_agent::dispatch::CommandDef {
    COMMANDS
        .iter()
        .find(|c| request.contains(&format!("\"{}\"", c.name)))
        .unwrap()
}

#[test]
fn vm_hardened_profiles_change_the_machine_as_unhardened() {
    let _g = vm_lock();
    let requests: Vec<String> = CHANGES.iter().map(|s| s.to_string()).collect();
    let plain = run(&Vm::boot(&static_agent(), &[]), &requests);
    // The sequence reached the interesting branches.
    assert_eq!(plain[1], r#"{"return": 0}"#);
    assert_eq!(plain[2], r#"{"return": "frozen"}"#);
    assert!(plain[5].contains("/mnt/data"), "{}", plain[5]);
    assert_eq!(plain[8], r#"{"return": 0}"#);
    assert_eq!(plain[12], r#"{"return": {}}"#);
    assert_eq!(plain[14], r#"{"return": {"keys": ["algo key0 c"]}}"#);
    for profile in [Profile::NoExecFiles, Profile::Lifecycle] {
        let arg = format!("--profile={}", profile.name());
        let hard = run(&Vm::boot(&static_agent(), &["--harden", &arg]), &requests);
        for ((req, want), got) in requests.iter().zip(&plain).zip(&hard) {
            let cmd = command_of(req);
            if profile.allows(cmd.category) {
                assert_eq!(got, want, "{arg}: {req}");
            } else {
                assert_eq!(
                    got,
                    &common::zero_numbers(&format!(
                        r#"{{"error": {{"class": "CommandNotFound", "desc": "Command {} has been disabled: the command is not allowed"}}}}"#,
                        cmd.name
                    )),
                    "{arg}: {req}"
                );
            }
        }
    }
}

#[test]
fn vm_read_only_under_seccomp_answers_as_unhardened() {
    let _g = vm_lock();
    let requests: Vec<String> = COMMANDS
        .iter()
        .filter(|c| Profile::ReadOnly.allows(c.category) && c.category == Category::Info)
        .map(|c| format!(r#"{{"execute":"{}"}}"#, c.name))
        .collect();
    assert!(requests.len() >= 5, "{requests:?}");
    let plain = run(
        &Vm::boot(&static_agent(), &["--profile=read-only"]),
        &requests,
    );
    let hard = run(
        &Vm::boot(&static_agent(), &["--profile=read-only", "--harden"]),
        &requests,
    );
    for ((req, want), got) in requests.iter().zip(&plain).zip(&hard) {
        assert_eq!(got, want, "{req}");
    }
}
