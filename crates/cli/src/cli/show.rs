//! Human-readable views of the agent's replies, made to read well in 80 columns.

use qga_proto::Value;

use super::table::{boolean, columns, int, items, list, num, s, utc, Table};
use super::term::human_bytes;

/// guest-info: version, then enabled and disabled commands in columns.
pub fn info(v: &Value) -> String {
    let cmds = list(v, "supported_commands");
    let mut on = Vec::new();
    let mut off = Vec::new();
    for c in cmds {
        let name = s(c, "name").unwrap_or_default();
        if boolean(c, "enabled").unwrap_or(false) {
            on.push(name);
        } else {
            off.push(name);
        }
    }
    on.sort();
    off.sort();
    let mut out = format!(
        "version: {}\nenabled commands ({} of {}):\n",
        s(v, "version").unwrap_or_default(),
        on.len(),
        cmds.len()
    );
    out.push_str(&columns(&on, 80, 2));
    if !off.is_empty() {
        out.push_str(&format!("disabled ({}):\n", off.len()));
        out.push_str(&columns(&off, 80, 2));
    }
    out
}

/// guest-network-get-interfaces.
pub fn ifaddr(v: &Value) -> String {
    let mut t = Table::new(&["INTERFACE", "MAC", "ADDRESSES"]);
    for i in items(v) {
        let addrs: Vec<String> = list(i, "ip-addresses")
            .iter()
            .map(|a| {
                format!(
                    "{}/{}",
                    s(a, "ip-address").unwrap_or_default(),
                    int(a, "prefix").unwrap_or(0)
                )
            })
            .collect();
        t.row(vec![
            s(i, "name").unwrap_or_default(),
            s(i, "hardware-address").unwrap_or_else(|| "-".into()),
            if addrs.is_empty() {
                "-".into()
            } else {
                addrs.join("\n")
            },
        ]);
    }
    t.render()
}

fn disk_label(d: &Value) -> String {
    s(d, "dev")
        .or_else(|| s(d, "serial"))
        .unwrap_or_else(|| s(d, "bus-type").unwrap_or_else(|| "?".into()))
}

/// guest-get-fsinfo, in mount order (the agent lists it reversed).
pub fn fsinfo(v: &Value) -> String {
    let mut t = Table::new(&[
        "MOUNTPOINT",
        "TYPE",
        "DEVICE",
        "SIZE",
        "USED",
        "USE%",
        "DISKS",
    ]);
    for f in items(v).iter().rev() {
        let used = int(f, "used-bytes");
        let total = int(f, "total-bytes");
        let pct = match (used, total) {
            (Some(u), Some(t)) if t > 0 => format!("{}%", (u * 100 + t - 1) / t),
            _ => "-".into(),
        };
        let size = |n: Option<i128>| n.map_or("-".into(), |n| human_bytes(n as u64));
        let disks: Vec<String> = list(f, "disk").iter().map(disk_label).collect();
        t.row(vec![
            s(f, "mountpoint").unwrap_or_default(),
            s(f, "type").unwrap_or_default(),
            s(f, "name").unwrap_or_default(),
            size(total),
            size(used),
            pct,
            if disks.is_empty() {
                "-".into()
            } else {
                disks.join(",")
            },
        ]);
    }
    t.render()
}

/// guest-get-disks, in discovery order (the agent lists it reversed).
pub fn disks(v: &Value) -> String {
    let mut t = Table::new(&["NAME", "KIND", "BUS", "SERIAL", "ALIAS", "ON"]);
    for d in items(v).iter().rev() {
        let addr = d
            .as_dict()
            .and_then(|x| x.get("address"))
            .cloned()
            .unwrap_or(Value::Null);
        let deps: Vec<String> = list(d, "dependencies")
            .iter()
            .filter_map(|x| {
                x.as_bytes()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
            })
            .collect();
        t.row(vec![
            s(d, "name").unwrap_or_default(),
            if boolean(d, "partition").unwrap_or(false) {
                "part"
            } else {
                "disk"
            }
            .into(),
            s(&addr, "bus-type").unwrap_or_else(|| "-".into()),
            s(&addr, "serial").unwrap_or_else(|| "-".into()),
            s(d, "alias").unwrap_or_else(|| "-".into()),
            if deps.is_empty() {
                "-".into()
            } else {
                deps.join(",")
            },
        ]);
    }
    t.render()
}

/// guest-get-vcpus, by id.
pub fn vcpus(v: &Value) -> String {
    let mut cpus: Vec<&Value> = items(v).iter().collect();
    cpus.sort_by_key(|c| int(c, "logical-id").unwrap_or(0));
    let online = cpus
        .iter()
        .filter(|c| boolean(c, "online").unwrap_or(false))
        .count();
    let mut t = Table::new(&["CPU", "ONLINE", "CAN-OFFLINE"]);
    let yn = |b: Option<bool>| match b {
        Some(true) => "yes".to_string(),
        Some(false) => "no".to_string(),
        None => "-".to_string(),
    };
    for c in &cpus {
        t.row(vec![
            int(c, "logical-id").unwrap_or(0).to_string(),
            yn(boolean(c, "online")),
            yn(boolean(c, "can-offline")),
        ]);
    }
    format!("{} vCPUs, {online} online\n{}", cpus.len(), t.render())
}

/// guest-get-osinfo, as `key: value` lines.
pub fn osinfo(v: &Value) -> String {
    let mut t = Table::new(&["", ""]);
    let mut out = String::new();
    for (k, label) in [
        ("pretty-name", "os"),
        ("name", "name"),
        ("version", "version"),
        ("id", "id"),
        ("version-id", "version-id"),
        ("variant", "variant"),
        ("variant-id", "variant-id"),
        ("kernel-release", "kernel"),
        ("kernel-version", "kernel-version"),
        ("machine", "machine"),
    ] {
        if let Some(val) = s(v, k) {
            t.row(vec![format!("{label}:"), val]);
        }
    }
    for line in t.render().lines().skip(1) {
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// guest-get-users.
pub fn users(v: &Value) -> String {
    if items(v).is_empty() {
        return "no users logged in\n".into();
    }
    let mut t = Table::new(&["USER", "DOMAIN", "LOGIN (UTC)"]);
    for u in items(v) {
        t.row(vec![
            s(u, "user").unwrap_or_default(),
            s(u, "domain").unwrap_or_else(|| "-".into()),
            num(u, "login-time").map_or("-".into(), |t| utc(t as i64)),
        ]);
    }
    t.render()
}

/// guest-fstrim.
pub fn fstrim(v: &Value) -> String {
    let mut t = Table::new(&["PATH", "TRIMMED", "RESULT"]);
    for p in list(v, "paths").iter().rev() {
        t.row(vec![
            s(p, "path").unwrap_or_default(),
            int(p, "trimmed").map_or("-".into(), |n| human_bytes(n as u64)),
            s(p, "error").unwrap_or_else(|| "ok".into()),
        ]);
    }
    t.render()
}

/// guest-get-load.
pub fn load(v: &Value) -> String {
    let f = |k| num(v, k).map_or("-".into(), |x| format!("{x:.2}"));
    format!(
        "load average: {} {} {} (1, 5, 15 min)\n",
        f("load1m"),
        f("load5m"),
        f("load15m")
    )
}

/// guest-get-cpustats: times in seconds (the agent reports milliseconds).
pub fn cpustats(v: &Value) -> String {
    let cols = [
        "user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal",
    ];
    let mut header = vec!["CPU"];
    header.extend([
        "USER", "NICE", "SYSTEM", "IDLE", "IOWAIT", "IRQ", "SOFTIRQ", "STEAL",
    ]);
    let mut t = Table::new(&header);
    for c in items(v) {
        let mut row = vec![int(c, "cpu").map_or("?".into(), |n| n.to_string())];
        for k in cols {
            row.push(int(c, k).map_or("-".into(), |ms| format!("{:.0}", ms as f64 / 1000.0)));
        }
        t.row(row);
    }
    format!("CPU time (seconds):\n{}", t.render())
}

/// guest-get-diskstats: devices with any I/O.
pub fn diskstats(v: &Value) -> String {
    let mut t = Table::new(&["DEVICE", "READS", "READ", "WRITES", "WRITTEN", "IO-TIME"]);
    for d in items(v) {
        let st = d
            .as_dict()
            .and_then(|x| x.get("stats"))
            .cloned()
            .unwrap_or(Value::Null);
        let n = |k| int(&st, k).unwrap_or(0);
        if n("read-ios") == 0 && n("write-ios") == 0 {
            continue;
        }
        t.row(vec![
            s(d, "name").unwrap_or_default(),
            n("read-ios").to_string(),
            human_bytes((n("read-sectors") * 512) as u64),
            n("write-ios").to_string(),
            human_bytes((n("write-sectors") * 512) as u64),
            format!("{:.1}s", n("total-ticks") as f64 / 1000.0),
        ]);
    }
    format!("disk I/O since boot:\n{}", t.render())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Value {
        qga_proto::json::parse_one(s.as_bytes()).unwrap().unwrap()
    }

    #[test]
    fn ifaddr_table() {
        let v = parse(
            r#"[{"name": "lo", "ip-addresses": [{"ip-address-type": "ipv4", "ip-address": "127.0.0.1", "prefix": 8},
               {"ip-address-type": "ipv6", "ip-address": "::1", "prefix": 128}], "hardware-address": "00:00:00:00:00:00"},
               {"name": "eth0", "hardware-address": "52:54:00:12:34:56"}]"#,
        );
        assert_eq!(
            ifaddr(&v),
            "INTERFACE  MAC                ADDRESSES\n\
             lo         00:00:00:00:00:00  127.0.0.1/8\n\
             \x20                             ::1/128\n\
             eth0       52:54:00:12:34:56  -\n"
        );
    }

    #[test]
    fn fsinfo_in_mount_order_with_percent() {
        let v = parse(
            r#"[{"name": "vdb", "total-bytes": 1000, "mountpoint": "/data", "disk": [], "used-bytes": 1, "type": "xfs"},
               {"name": "vda1", "total-bytes": 2048, "mountpoint": "/", "disk": [{"bus-type": "virtio", "dev": "/dev/vda"}], "used-bytes": 1024, "type": "ext4"}]"#,
        );
        let out = fsinfo(&v);
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[1].starts_with("/           ext4  vda1"), "{out}");
        assert!(lines[1].ends_with("50%   /dev/vda"), "{out}");
        assert!(lines[2].contains("1%"), "{out}");
        assert!(out.lines().all(|l| l.len() <= 80));
    }

    #[test]
    fn load_and_info() {
        let v = parse(r#"{"load15m": 0.05, "load5m": 0.1, "load1m": 1.25}"#);
        assert_eq!(load(&v), "load average: 1.25 0.10 0.05 (1, 5, 15 min)\n");
        let v = parse(
            r#"{"version": "10.0.2", "supported_commands": [{"enabled": true, "name": "guest-ping", "success-response": true},
               {"enabled": false, "name": "guest-exec", "success-response": true}]}"#,
        );
        assert_eq!(
            info(&v),
            "version: 10.0.2\nenabled commands (1 of 2):\n  guest-ping\ndisabled (1):\n  guest-exec\n"
        );
    }
}
