//! The results: one row per figure with both agents and their ratio, the cost of each
//! workload, the targets of issue 7 checked against the figures, printed as a table and
//! written as JSON.

use qga_proto::{Dict, Value};

/// A measured value, or why it could not be measured.
pub type Cell = Option<Result<f64, String>>;

/// One figure for both agents.
pub struct Metric {
    /// Key: `ping_p50`, `read_4194304`, ...
    pub key: String,
    /// Ours / qemu-ga.
    pub ours: Cell,
    /// The reference.
    pub theirs: Cell,
    /// What no agent can beat on this machine: for file transfers the base64 + socket
    /// limit (MiB/s), for exec the bare agent's latency (ms, see bare.rs).
    pub limit: Option<f64>,
}

/// Agent CPU seconds, agent peak RSS (bytes) and client CPU seconds of one workload
/// run against one agent.
pub type Cost = Option<Result<(f64, f64, f64), String>>;

/// Everything measured in one run.
#[derive(Default)]
pub struct Report {
    /// `--quick` run (sizes reduced; figures are a smoke test, not a measurement).
    pub quick: bool,
    /// The figures, in table order.
    pub metrics: Vec<Metric>,
    /// Per workload: (name, ours, qemu-ga).
    pub costs: Vec<(String, Cost, Cost)>,
    /// Free-form lines printed under the table (sizes, shared libraries, caveats).
    pub notes: Vec<String>,
    /// Shared libraries our agent needs beyond libc (and the loader).
    pub extra_libs: Vec<String>,
}

/// How to show a figure: label, unit, divisor from the stored unit, higher is better.
fn describe(key: &str) -> (String, &'static str, f64, bool) {
    let chunk = |k: &str| {
        k.parse::<usize>()
            .map(crate::transfer::chunk_label)
            .unwrap_or_default()
    };
    if let Some(c) = key.strip_prefix("read_") {
        return (
            format!("file read, {} chunks", chunk(c)),
            "MiB/s",
            1.0,
            true,
        );
    }
    if let Some(c) = key.strip_prefix("write_") {
        return (
            format!("file write, {} chunks", chunk(c)),
            "MiB/s",
            1.0,
            true,
        );
    }
    let (label, unit, div, higher) = match key {
        "startup" => ("startup (spawn to first reply)", "ms", 1.0, false),
        "idle_rss" => ("idle RSS", "MB", 1e6, false),
        "idle_threads" => ("threads at idle", "", 1.0, false),
        "idle_wakeups" => ("idle wakeups (voluntary switches)", "", 1.0, false),
        "ping_p50" => ("ping round trip p50", "µs", 1.0, false),
        "ping_p99" => ("ping round trip p99", "µs", 1.0, false),
        "loaded_p50" => ("ping p50, every CPU busy", "µs", 1.0, false),
        "loaded_p99" => ("ping p99, every CPU busy", "µs", 1.0, false),
        "loaded_client_rt" => ("  (client real-time: 1; needs root)", "", 1.0, false),
        "pipelined" => ("pipelined pings", "cmd/s", 1.0, true),
        "exec_p50" => ("exec /bin/true to exited, p50", "ms", 1.0, false),
        "exec_p99" => ("exec /bin/true to exited, p99", "ms", 1.0, false),
        "kubevirt_cpu" => ("agent CPU per KubeVirt poll cycle", "µs", 1.0, false),
        "peak_rss" => ("peak RSS over all workloads", "MB", 1e6, false),
        "peak_rss_48m" => ("peak RSS during 48 MiB transfers", "MB", 1e6, false),
        "binary" => ("binary size (file)", "MB", 1e6, false),
        "commands" => ("commands (guest-info)", "", 1.0, true),
        _ => ("?", "", 1.0, false),
    };
    (label.to_string(), unit, div, higher)
}

fn fmt_num(v: f64) -> String {
    let a = v.abs();
    if a >= 1000.0 || v == v.trunc() && a >= 10.0 {
        format!("{v:.0}")
    } else if a >= 100.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

fn fmt_cell(c: &Cell, div: f64) -> String {
    match c {
        None => "-".into(),
        Some(Ok(v)) => fmt_num(v / div),
        Some(Err(_)) => "error".into(),
    }
}

/// Ours divided by qemu-ga's, when both exist and the divisor is not zero.
pub fn ratio(m: &Metric) -> Option<f64> {
    match (&m.ours, &m.theirs) {
        (Some(Ok(o)), Some(Ok(t))) if *t != 0.0 => Some(o / t),
        _ => None,
    }
}

impl Report {
    /// Records one figure of one agent (`theirs` selects the column).
    pub fn set(&mut self, key: &str, theirs: bool, value: Result<f64, String>) {
        let i = match self.metrics.iter().position(|m| m.key == key) {
            Some(i) => i,
            None => {
                self.metrics.push(Metric {
                    key: key.to_string(),
                    ours: None,
                    theirs: None,
                    limit: None,
                });
                self.metrics.len() - 1
            }
        };
        let m = &mut self.metrics[i];
        *(if theirs { &mut m.theirs } else { &mut m.ours }) = Some(value);
    }

    /// The figure `key`, if recorded.
    pub fn metric(&self, key: &str) -> Option<&Metric> {
        self.metrics.iter().find(|m| m.key == key)
    }

    /// Every error recorded, with where it happened.
    pub fn errors(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut add = |what: &str, who: &str, c: &Option<Result<f64, String>>| {
            if let Some(Err(e)) = c {
                out.push(format!("{what} ({who}): {e}"));
            }
        };
        for m in &self.metrics {
            add(&m.key, "ours", &m.ours);
            add(&m.key, "qemu-ga", &m.theirs);
        }
        out.dedup();
        out
    }

    /// The table, as printed on stdout.
    pub fn table(&self) -> String {
        let mut rows = vec![[
            "figure".to_string(),
            "unit".into(),
            "ours".into(),
            "qemu-ga".into(),
            "ours/qemu-ga".into(),
            "limit (% of it reached: ours, qemu-ga)".into(),
        ]];
        for m in &self.metrics {
            let (label, unit, div, higher) = describe(&m.key);
            let limit = match (m.limit, &m.ours, &m.theirs) {
                (Some(l), o, t) => {
                    // Throughput: the share of the limit reached; latency: limit / value.
                    let pct = |c: &Cell| match c {
                        Some(Ok(v)) if higher => format!("{:.0}%", v / l * 100.0),
                        Some(Ok(v)) => format!("{:.0}%", l / v * 100.0),
                        _ => "-".into(),
                    };
                    format!("{} ({}, {})", fmt_num(l), pct(o), pct(t))
                }
                _ => String::new(),
            };
            rows.push([
                label,
                unit.to_string(),
                fmt_cell(&m.ours, div),
                fmt_cell(&m.theirs, div),
                ratio(m).map(|r| format!("{r:.2}x")).unwrap_or_default(),
                limit,
            ]);
        }
        let mut out = render(&rows);
        out.push('\n');
        let mut cost_rows = vec![[
            "workload".to_string(),
            "CPU s ours".into(),
            "CPU s qemu-ga".into(),
            "ratio".into(),
            "peak RSS MB ours".into(),
            "peak RSS MB qemu-ga".into(),
            "ratio".into(),
            "client CPU s (vs ours, vs qemu-ga)".into(),
        ]];
        for (name, o, t) in &self.costs {
            let get = |c: &Cost, i: usize| -> Cell {
                c.as_ref()
                    .map(|r| r.as_ref().map(|v| [v.0, v.1, v.2][i]).map_err(Clone::clone))
            };
            let pair = |i: usize, div: f64| {
                let m = Metric {
                    key: String::new(),
                    ours: get(o, i),
                    theirs: get(t, i),
                    limit: None,
                };
                let r = ratio(&m).map(|r| format!("{r:.2}x")).unwrap_or_default();
                (fmt_cell(&m.ours, div), fmt_cell(&m.theirs, div), r)
            };
            let (c0, c1, cr) = pair(0, 1.0);
            let (p0, p1, pr) = pair(1, 1e6);
            let (m0, m1, _) = pair(2, 1.0);
            cost_rows.push([name.clone(), c0, c1, cr, p0, p1, pr, format!("{m0}, {m1}")]);
        }
        out.push_str(&render(&cost_rows));
        out
    }

    /// The report as JSON: figures in base units (ms, µs, MiB/s, bytes, counts).
    pub fn to_json(&self, targets: &[crate::targets::Target]) -> Vec<u8> {
        let cell = |c: &Cell| match c {
            None => Value::Null,
            Some(Ok(v)) => Value::Double(*v),
            Some(Err(e)) => {
                let mut d = Dict::new();
                d.insert("error", Value::str(e.as_str()));
                Value::Dict(d)
            }
        };
        let metrics = self.metrics.iter().map(|m| {
            let (label, unit, _, higher) = describe(&m.key);
            let mut d = Dict::new();
            d.insert("key", Value::str(m.key.as_str()));
            d.insert("label", Value::str(label));
            d.insert(
                "unit",
                Value::str(if unit == "MB" { "bytes" } else { unit }),
            );
            d.insert("higher_is_better", Value::Bool(higher));
            d.insert("ours", cell(&m.ours));
            d.insert("qemu_ga", cell(&m.theirs));
            d.insert("ratio", ratio(m).map_or(Value::Null, Value::Double));
            d.insert("limit", m.limit.map_or(Value::Null, Value::Double));
            Value::Dict(d)
        });
        let cost = |c: &Cost| match c {
            Some(Ok((cpu, peak, client))) => {
                let mut d = Dict::new();
                d.insert("cpu_s", Value::Double(*cpu));
                d.insert("peak_rss_bytes", Value::Double(*peak));
                d.insert("client_cpu_s", Value::Double(*client));
                Value::Dict(d)
            }
            other => cell(
                &other
                    .as_ref()
                    .map(|r| r.as_ref().map(|_| 0.0).map_err(Clone::clone)),
            ),
        };
        let costs = self.costs.iter().map(|(name, o, t)| {
            let mut d = Dict::new();
            d.insert("workload", Value::str(name.as_str()));
            d.insert("ours", cost(o));
            d.insert("qemu_ga", cost(t));
            Value::Dict(d)
        });
        let targets = targets.iter().map(|t| {
            let mut d = Dict::new();
            d.insert("target", Value::str(t.name.as_str()));
            d.insert("met", t.met.map_or(Value::Null, Value::Bool));
            d.insert("detail", Value::str(t.detail.as_str()));
            Value::Dict(d)
        });
        let mut root = Dict::new();
        root.insert("quick", Value::Bool(self.quick));
        root.insert("metrics", Value::List(metrics.collect()));
        root.insert("workloads", Value::List(costs.collect()));
        root.insert("targets", Value::List(targets.collect()));
        root.insert(
            "notes",
            Value::List(self.notes.iter().map(|n| Value::str(n.as_str())).collect()),
        );
        let mut out = Value::Dict(root).to_json();
        out.push(b'\n');
        out
    }
}

/// Aligns rows into columns: the first left-aligned, the others right-aligned.
fn render<const N: usize>(rows: &[[String; N]]) -> String {
    let mut width = [0usize; N];
    for r in rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for (i, r) in rows.iter().enumerate() {
        let mut line = String::new();
        for (j, (c, w)) in r.iter().zip(width).enumerate() {
            let pad = " ".repeat(w - c.chars().count());
            if j == 0 {
                line.push_str(&format!("{c}{pad}"));
            } else {
                line.push_str(&format!("  {pad}{c}"));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
        if i == 0 {
            out.push_str(&"-".repeat(width.iter().sum::<usize>() + 2 * (N - 1)));
            out.push('\n');
        }
    }
    out
}
