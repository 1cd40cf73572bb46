//! The targets of issue 7, checked against one run's figures (ours and qemu-ga from the
//! same run, so the machine's mood cancels out of the ratios).

use crate::report::{ratio, Report};

/// One target and whether this run meets it (`None`: not measured in this run).
pub struct Target {
    /// What is promised.
    pub name: String,
    /// Met, missed, or unknown.
    pub met: Option<bool>,
    /// The measured numbers behind the verdict.
    pub detail: String,
}

/// The largest stripped agent binary allowed, bytes.
pub const MAX_BINARY: f64 = 1.5e6;
/// The largest idle RSS allowed for our agent, bytes.
pub const MAX_IDLE_RSS: f64 = 2.2e6;

fn ours(r: &Report, key: &str) -> Option<f64> {
    match r.metric(key)?.ours {
        Some(Ok(v)) => Some(v),
        _ => None,
    }
}

/// `ours/qemu-ga` of `key` compared with `bound` (`at_least`: ratio ≥ bound).
fn ratio_target(r: &Report, name: &str, key: &str, bound: f64, at_least: bool) -> Target {
    let m = r.metric(key);
    let ratio = m.and_then(ratio);
    let met = ratio.map(|x| if at_least { x >= bound } else { x <= bound });
    let mut detail = match ratio {
        Some(x) => format!(
            "ours/qemu-ga = {x:.2} (needs {} {bound:.2})",
            if at_least { ">=" } else { "<=" }
        ),
        None => "not measured".into(),
    };
    // Where the machine sets a limit, say what ratio it would allow at best.
    if let (Some(l), Some(Some(Ok(t)))) = (m.and_then(|m| m.limit), m.map(|m| &m.theirs)) {
        if *t > 0.0 && ratio.is_some() {
            let allowed = l / t;
            detail += &format!("; the limit allows {allowed:.2} at best");
            let out_of_reach = if at_least {
                allowed < bound
            } else {
                allowed > bound
            };
            if let (true, Some(o)) = (out_of_reach, ours(r, key)) {
                // How much of what the machine allows ours reaches.
                let reached = if at_least { o / l } else { l / o };
                // The exec limit is the bare agent's latency (see bare.rs), the transfer
                // limits base64 and one trip through a socket with no agent at all.
                let who = if key.starts_with("exec") {
                    "not even a bare agent (spawn and waitpid, nothing else) meets it"
                } else {
                    "no agent could meet it"
                };
                detail += &format!(
                    ", so {who} in this run; ours is at {:.0}% of the limit",
                    reached * 100.0
                );
            }
        }
    }
    Target {
        name: name.into(),
        met,
        detail,
    }
}

/// All targets.
pub fn evaluate(r: &Report, transfer_chunks: &[(usize, &str)]) -> Vec<Target> {
    let mut t = Vec::new();
    for dir in ["read", "write"] {
        for (chunk, label) in transfer_chunks {
            t.push(ratio_target(
                r,
                &format!("file {dir} at {label} chunks >= 5x qemu-ga"),
                &format!("{dir}_{chunk}"),
                5.0,
                true,
            ));
        }
    }
    t.push(ratio_target(
        r,
        "pipelined commands/s >= 2x",
        "pipelined",
        2.0,
        true,
    ));
    t.push(ratio_target(r, "ping p50 no worse", "ping_p50", 1.0, false));
    t.push(ratio_target(
        r,
        "exec latency <= 1/2",
        "exec_p50",
        0.5,
        false,
    ));
    t.push(ratio_target(
        r,
        "agent CPU per KubeVirt poll cycle <= 1/2",
        "kubevirt_cpu",
        0.5,
        false,
    ));
    let mut rss = ratio_target(
        r,
        "idle RSS <= 1/2 and under 2.2 MB",
        "idle_rss",
        0.5,
        false,
    );
    if let (Some(met), Some(v)) = (rss.met, ours(r, "idle_rss")) {
        rss.met = Some(met && v < MAX_IDLE_RSS);
        rss.detail += &format!("; ours {:.2} MB (needs < 2.2)", v / 1e6);
    }
    t.push(rss);
    t.push(ratio_target(
        r,
        "peak RSS during 48 MiB transfers <= 1/3",
        "peak_rss_48m",
        1.0 / 3.0,
        false,
    ));
    let wake = ours(r, "idle_wakeups");
    t.push(Target {
        name: "idle wakeups 0".into(),
        met: wake.map(|w| w == 0.0),
        detail: wake.map_or("not measured".into(), |w| format!("ours {w}")),
    });
    let size = ours(r, "binary");
    let libs = &r.extra_libs;
    t.push(Target {
        name: "agent binary <= 1.5 MB, no shared library beyond libc".into(),
        met: size.map(|s| s <= MAX_BINARY && libs.is_empty()),
        detail: match size {
            Some(s) if libs.is_empty() => format!("{:.3} MB, libc only", s / 1e6),
            Some(s) => format!("{:.3} MB, also links {}", s / 1e6, libs.join(", ")),
            None => "not measured".into(),
        },
    });
    t
}

/// The targets as printed under the table.
pub fn print(targets: &[Target]) -> String {
    let mut out = String::from("targets:\n");
    for t in targets {
        let mark = match t.met {
            Some(true) => "MET    ",
            Some(false) => "MISSED ",
            None => "n/a    ",
        };
        out.push_str(&format!("  {mark} {}: {}\n", t.name, t.detail));
    }
    out
}
