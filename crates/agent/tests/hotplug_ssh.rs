//! guest-set-vcpus, guest-set-memory-blocks and the ssh key commands through the
//! dispatcher. The differential test against qemu-ga 10.0.2 only sends ssh requests
//! for users that do not exist or whose home does not exist, so no file is touched.

mod common;
mod fakeguest;

use common::AgentProc;
use fakeguest::{err, s, Guest};
use qga_proto::{Dict, Value};

#[test]
fn hotplug_replies() {
    let g = Guest::new();
    std::fs::create_dir_all(g.dir.join("cpu/cpu1")).unwrap();
    std::fs::write(g.dir.join("cpu/cpu1/online"), "1").unwrap();
    let cpu = |id: i64, online: bool| {
        let mut d = Dict::new();
        d.insert("logical-id", Value::Int(id));
        d.insert("online", Value::Bool(online));
        Value::Dict(d)
    };
    let set = |v: Vec<Value>| g.run("guest-set-vcpus", &[("vcpus", Value::List(v))]);
    assert_eq!(
        set(vec![cpu(1, false), cpu(5, true)]).as_deref(),
        Some("{\"return\": 1, \"id\": 7}")
    );
    assert_eq!(
        std::fs::read_to_string(g.dir.join("cpu/cpu1/online")).unwrap(),
        "0"
    );
    assert_eq!(set(vec![]).as_deref(), Some("{\"return\": 0, \"id\": 7}"));
    assert_eq!(
        set(vec![cpu(5, true)]),
        err(&format!(
            "open(\\\"{}/cpu/cpu5/\\\"): No such file or directory",
            g.dir.0.display()
        ))
    );

    std::fs::create_dir_all(g.dir.join("memory/memory3")).unwrap();
    let blk = |i: i64, online: bool| {
        let mut d = Dict::new();
        d.insert("phys-index", Value::Int(i));
        d.insert("online", Value::Bool(online));
        d.insert("can-offline", Value::Bool(true));
        Value::Dict(d)
    };
    assert_eq!(
        g.run("guest-set-memory-blocks", &[("mem-blks", Value::List(vec![blk(999999, true), blk(3, true), blk(3, false)]))])
            .as_deref(),
        Some(
            "{\"return\": [{\"response\": \"not-found\", \"error-code\": 2, \"phys-index\": 999999}, \
             {\"response\": \"success\", \"error-code\": 2, \"phys-index\": 3}, \
             {\"response\": \"operation-not-supported\", \"error-code\": 2, \"phys-index\": 3}], \"id\": 7}"
        )
    );
    assert_eq!(
        g.run(
            "guest-set-memory-blocks",
            &[("mem-blks", Value::List(vec![]))]
        )
        .as_deref(),
        Some("{\"return\": [], \"id\": 7}")
    );
    assert_eq!(
        g.run("guest-set-memory-blocks", &[("mem-blks", Value::List(vec![blk(-1, true)]))]).as_deref(),
        Some("{\"return\": [{\"response\": \"not-found\", \"error-code\": 2, \"phys-index\": 18446744073709551615}], \"id\": 7}")
    );
}

/// (command, JSON arguments for qemu-ga, the same arguments for ours)
type Case<'a> = (&'a str, &'a str, Vec<(&'a str, Value)>);

/// ssh requests that cannot touch any file: unknown users, and `nobody` (home
/// `/nonexistent`) for the read-only get. Our dispatcher's bytes against qemu-ga's.
#[test]
fn ssh_errors_match_qemu_ga() {
    let ours = Guest::new();
    let mut reference = AgentProc::reference(&[]);
    let mut client = reference.connect();
    let list = |ks: &[&str]| Value::List(ks.iter().map(|k| s(k)).collect());
    let cases: Vec<Case> = vec![
        (
            "guest-ssh-get-authorized-keys",
            r#"{"username":"qga-no-such-user"}"#,
            vec![("username", s("qga-no-such-user"))],
        ),
        (
            "guest-ssh-get-authorized-keys",
            r#"{"username":""}"#,
            vec![("username", s(""))],
        ),
        (
            "guest-ssh-get-authorized-keys",
            r#"{"username":"nobody"}"#,
            vec![("username", s("nobody"))],
        ),
        (
            "guest-ssh-add-authorized-keys",
            r#"{"username":"qga-no-such-user","keys":[""]}"#,
            vec![("username", s("qga-no-such-user")), ("keys", list(&[""]))],
        ),
        (
            "guest-ssh-add-authorized-keys",
            r##"{"username":"qga-no-such-user","keys":["ok","#x"]}"##,
            vec![
                ("username", s("qga-no-such-user")),
                ("keys", list(&["ok", "#x"])),
            ],
        ),
        (
            "guest-ssh-add-authorized-keys",
            r#"{"username":"x","keys":["a\nb"],"reset":true}"#,
            vec![
                ("username", s("x")),
                ("keys", list(&["a\nb"])),
                ("reset", Value::Bool(true)),
            ],
        ),
        (
            "guest-ssh-remove-authorized-keys",
            r#"{"username":"qga-no-such-user","keys":[]}"#,
            vec![("username", s("qga-no-such-user")), ("keys", list(&[]))],
        ),
        (
            "guest-ssh-remove-authorized-keys",
            r##"{"username":"qga-no-such-user","keys":["#"]}"##,
            vec![("username", s("qga-no-such-user")), ("keys", list(&["#"]))],
        ),
        (
            "guest-ssh-remove-authorized-keys",
            r#"{"username":"qga-no-such-user"}"#,
            vec![("username", s("qga-no-such-user"))],
        ),
    ];
    for (cmd, json_args, args) in cases {
        let want = client.cmd(&format!(
            r#"{{"execute":"{cmd}","arguments":{json_args},"id":7}}"#
        ));
        let got = ours.run(cmd, &args).unwrap();
        assert_eq!(got, want, "{cmd} {json_args}");
    }
    assert_eq!(reference.stop(), Some(0));
}
