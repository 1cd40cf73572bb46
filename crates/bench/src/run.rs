//! Orchestration: sizes for the full and quick runs, the order of the workloads (each
//! run on our agent, then on qemu-ga, both agents alive side by side), and the cost of
//! each workload (CPU from /proc/<pid>/stat, peak RSS from VmHWM reset before it).

use std::path::Path;
use std::time::{Duration, Instant};

use crate::agent::{self, Agent};
use crate::report::{Cost, Report};
use crate::workloads::Figures;
use crate::{targets, transfer, workloads, Opts};

/// Chunk sizes of the transfer workloads.
const CHUNKS: [usize; 4] = [4 << 10, 1 << 20, 4 << 20, 48 << 20];
/// The chunk sizes the targets name.
const TARGET_CHUNKS: [usize; 2] = [4 << 20, 48 << 20];

/// How much of each workload a run does.
struct Sizes {
    startups: usize,
    idle: Duration,
    pings: usize,
    loaded_pings: usize,
    pipelined: usize,
    execs: usize,
    kubevirt: usize,
    file: usize,
}

const FULL: Sizes = Sizes {
    startups: 30,
    idle: Duration::from_secs(10),
    pings: 20_000,
    loaded_pings: 2_000,
    pipelined: 200_000,
    execs: 200,
    kubevirt: 4_000,
    file: 256 << 20,
};

const QUICK: Sizes = Sizes {
    startups: 3,
    idle: Duration::from_secs(1),
    pings: 500,
    loaded_pings: 200,
    pipelined: 5_000,
    execs: 10,
    kubevirt: 20,
    file: 8 << 20,
};

fn median_ms(mut v: Vec<Duration>) -> f64 {
    crate::workloads::percentile(&mut v, 50.0).as_secs_f64() * 1e3
}

/// Agent CPU s, agent peak RSS bytes, client CPU s.
type CostFigures = (f64, f64, f64);

/// A workload, run once per agent.
type WorkFn<'a> = Box<dyn Fn(&Agent) -> Result<Figures, String> + 'a>;

/// Runs one workload on one agent and measures what it cost the agent (CPU, peak RSS)
/// and this client (CPU), so a reader can tell which side was the bottleneck.
fn costed(
    agent: &Agent,
    work: &dyn Fn(&Agent) -> Result<Figures, String>,
) -> (Result<Figures, String>, Result<CostFigures, String>) {
    let me = Path::new("/proc/self/stat");
    agent.reset_peak();
    let cpu0 = agent.cpu_secs();
    let mine0 = agent::cpu_secs_of(me);
    let figures = work(agent);
    let cost = (|| {
        let cpu = agent.cpu_secs()? - cpu0.clone()?;
        let mine = agent::cpu_secs_of(me)? - mine0.clone()?;
        let peak = agent.status_kib("VmHWM")? as f64 * 1024.0;
        Ok((cpu, peak, mine))
    })();
    (figures, cost)
}

/// Turns of a CPU-time workload per agent.
const ROUNDS: usize = 8;

/// What one run of a workload on one agent gave: its figures and what it cost.
type Turn = (Result<Figures, String>, Result<CostFigures, String>);

/// One result from the turns of a workload: figures averaged, CPU times added, the
/// highest peak RSS; the first error if any turn failed.
fn merge_turns(turns: Vec<Turn>) -> Turn {
    let n = turns.len().max(1) as f64;
    let mut figures: Result<Figures, String> = Ok(Vec::new());
    let mut cost: Result<CostFigures, String> = Ok((0.0, 0.0, 0.0));
    for (f, c) in turns {
        figures = figures.and_then(|mut acc| {
            let f = f?;
            if acc.is_empty() {
                acc = f.into_iter().map(|(k, v)| (k, v / n)).collect();
            } else {
                for ((_, a), (_, v)) in acc.iter_mut().zip(f) {
                    *a += v / n;
                }
            }
            Ok(acc)
        });
        cost = cost.and_then(|(cpu, peak, mine)| {
            let (c_cpu, c_peak, c_mine) = c?;
            Ok((cpu + c_cpu, peak.max(c_peak), mine + c_mine))
        });
    }
    (figures, cost)
}

/// The full side-by-side run. Returns whether every workload ran without error.
pub fn bench(opts: &Opts) -> Result<bool, String> {
    let sizes = if opts.quick { &QUICK } else { &FULL };
    let chunks = opts.chunks.clone().unwrap_or(CHUNKS.to_vec());
    for (what, p) in [("our agent", &opts.ours), ("qemu-ga", &opts.reference)] {
        if !p.exists() {
            return Err(format!(
                "{what} not found at {} (build with `cargo build --release -p qga-agent`; \
                 qemu-ga comes from .ci/install-deps.sh; see --ours / --reference)",
                p.display()
            ));
        }
    }
    let started = Instant::now();
    let mut r = Report {
        quick: opts.quick,
        ..Report::default()
    };
    let sides: [(&'static str, &Path, bool); 2] = [
        ("ours", &opts.ours, false),
        ("qemu-ga", &opts.reference, true),
    ];

    if opts.wants("size") {
        sizes_and_libs(&mut r, &opts.ours, &opts.reference);
    }
    if opts.wants("startup") {
        for (name, bin, theirs) in sides {
            let v = agent::startup_times(name, bin, sizes.startups).map(median_ms);
            r.set("startup", theirs, v);
        }
    }
    let (ours, _) = Agent::spawn("ours", &opts.ours)?;
    let (reference, _) = Agent::spawn("qemu-ga", &opts.reference)?;
    let agents = [(&ours, false), (&reference, true)];
    for (a, theirs) in agents {
        r.set("commands", theirs, command_count(a));
    }
    if !ours.reset_peak() {
        r.notes
            .push("peak RSS is cumulative: the kernel refused clear_refs".into());
    }
    if opts.wants("idle") {
        let idle = workloads::idle(&[&ours, &reference], sizes.idle);
        for ((_, theirs), figures) in agents.iter().zip(idle) {
            record(&mut r, *theirs, figures);
        }
        r.notes.push(format!(
            "idle: RSS after one ping and 0.5 s; wakeups = voluntary context switches of all threads over {} s with a client connected",
            sizes.idle.as_secs()
        ));
    }

    let data = if opts.wants("read") || opts.wants("write") || opts.wants("limit") {
        transfer::content(sizes.file)
    } else {
        Vec::new()
    };
    let data = &data;
    // (name, keys of its figures, the workload)
    type Work<'a> = (
        String,
        Vec<String>,
        Box<dyn Fn(&Agent) -> Result<Figures, String> + 'a>,
    );
    let keys = |k: &[&str]| k.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let mut work: Vec<Work> = Vec::new();
    if opts.wants("ping") {
        work.push((
            "ping".into(),
            keys(&["ping_p50", "ping_p99"]),
            Box::new(|a| workloads::ping(a, sizes.pings)),
        ));
    }
    if opts.wants("loaded") {
        // In slices, the two agents taking turns (see below): one-off stalls of this
        // shared machine would otherwise land on one agent's p99.
        let n = sizes.loaded_pings.div_ceil(ROUNDS);
        work.push((
            "ping with every CPU busy".into(),
            keys(&["loaded_p50", "loaded_p99", "loaded_client_rt"]),
            Box::new(move |a| workloads::ping_loaded(a, n)),
        ));
    }
    if opts.wants("pipelined") {
        let n = sizes.pipelined;
        work.push((
            "pipelined".into(),
            keys(&["pipelined"]),
            Box::new(move |a| workloads::pipelined(a, n)),
        ));
    }
    // In slices, the two agents, the floor and the bare agent taking turns (see below).
    let exec_slice = sizes.execs.div_ceil(ROUNDS);
    let bare = if opts.wants("exec") && opts.wants("limit") {
        let me = std::env::current_exe().map_err(|e| format!("finding qga-bench itself: {e}"))?;
        Some(Agent::spawn_with("bare", &me, &["bare-agent"])?.0)
    } else {
        None
    };
    if opts.wants("exec") {
        work.push((
            "exec".into(),
            keys(&["exec_p50", "exec_p99"]),
            Box::new(move |a| workloads::exec(a, exec_slice)),
        ));
    }
    if opts.wants("kubevirt") {
        // In slices, the two agents taking turns (see below).
        let slice = sizes.kubevirt.div_ceil(ROUNDS);
        work.push((
            "kubevirt poll".into(),
            keys(&["kubevirt_cpu"]),
            Box::new(move |a| workloads::kubevirt(a, slice)),
        ));
    }
    for (dir, wanted) in [("read", opts.wants("read")), ("write", opts.wants("write"))] {
        for chunk in chunks.iter().copied().filter(|_| wanted) {
            let name = format!("file {dir} {}", transfer::chunk_label(chunk));
            let f: WorkFn = if dir == "read" {
                Box::new(move |a| transfer::read(a, data, chunk))
            } else {
                Box::new(move |a| transfer::write(a, data, chunk))
            };
            work.push((name, vec![format!("{dir}_{chunk}")], f));
        }
    }
    let mut peaks = [0f64; 2];
    let mut peaks_48m = [None::<f64>; 2];
    let mut exec_floors: Vec<f64> = Vec::new();
    let mut exec_bare: Vec<f64> = Vec::new();
    for (name, keys, f) in &work {
        eprintln!("qga-bench: {name} ...");
        let mut costs: [Cost; 2] = [None, None];
        // A CPU-time figure, exec latency and ping under load are measured in turns,
        // ours then qemu-ga's, ROUNDS times (figures averaged over the turns), so a
        // change in the load of this shared machine falls on both alike; exec's floor
        // takes its turn before each pair.
        let exec = keys[0] == "exec_p50";
        let rounds = if keys[0] == "kubevirt_cpu" || keys[0] == "loaded_p50" || exec {
            ROUNDS
        } else {
            1
        };
        let mut turns: [Vec<Turn>; 2] = [Vec::new(), Vec::new()];
        for _ in 0..rounds {
            if let (true, Some(b)) = (exec, &bare) {
                exec_floors.push(workloads::exec_floor(exec_slice)?);
                let figures = workloads::exec(b, exec_slice)?;
                exec_bare.extend(figures.iter().filter(|f| f.0 == "exec_p50").map(|f| f.1));
            }
            for (i, (a, _)) in agents.iter().enumerate() {
                turns[i].push(costed(a, f.as_ref()));
            }
        }
        for (i, (_, theirs)) in agents.iter().enumerate() {
            let (figures, cost) = merge_turns(std::mem::take(&mut turns[i]));
            // A workload that failed has no meaningful cost.
            let cost = figures.as_ref().map_err(Clone::clone).and(cost);
            for key in keys.iter().filter(|_| figures.is_err()) {
                r.set(
                    key,
                    *theirs,
                    figures.as_ref().map(|_| 0.0).map_err(Clone::clone),
                );
            }
            record(&mut r, *theirs, figures);
            if let Ok((_, peak, _)) = cost {
                peaks[i] = peaks[i].max(peak);
                if keys[0].ends_with(&format!("_{}", 48 << 20)) {
                    peaks_48m[i] = Some(peaks_48m[i].unwrap_or(0.0).max(peak));
                }
            }
            costs[i] = Some(cost);
        }
        let [o, t] = costs;
        r.costs.push((name.clone(), o, t));
    }
    for (i, (_, theirs)) in agents.iter().enumerate() {
        if !work.is_empty() {
            r.set("peak_rss", *theirs, Ok(peaks[i]));
        }
        if let Some(p) = peaks_48m[i] {
            r.set("peak_rss_48m", *theirs, Ok(p));
        }
    }
    drop((ours, reference, bare));

    if opts.wants("limit") && !exec_floors.is_empty() {
        let floor = exec_floors.iter().sum::<f64>() / exec_floors.len() as f64;
        // The fastest request/reply round trip seen in this run: over a socketpair with
        // no agent, or either agent's guest-ping (threads of one process can be slower
        // to wake each other than two processes, so an agent may beat the socketpair).
        let socketpair = workloads::round_trip_floor(sizes.pings)?;
        let pings = r
            .metrics
            .iter()
            .filter(|m| m.key == "ping_p50")
            .flat_map(|m| [&m.ours, &m.theirs])
            .filter_map(|c| match c {
                Some(Ok(us)) => Some(us / 1e3),
                _ => None,
            });
        let rtt = pings.fold(socketpair, f64::min);
        // The floor's client learns of the exit through one wake-up; an agent needs two
        // one-way trips on top of the spawn and the child's run: the guest-exec request
        // in, and the reply to a guest-exec-status out. So no agent can go below
        // floor + half a round trip.
        let bound = floor + rtt / 2.0;
        // What an agent reaches that does nothing else (bare.rs), in turns with ours.
        let bare_p50 = exec_bare.iter().sum::<f64>() / exec_bare.len().max(1) as f64;
        if let Some(m) = r.metrics.iter_mut().find(|m| m.key == "exec_p50") {
            m.limit = Some(bare_p50);
        }
        r.notes.push(format!(
            "exec limit: {bare_p50:.3} ms, the bare agent's exec p50 (qga-bench bare-agent: one thread, no JSON \
             parser, posix_spawn and waitpid(WNOHANG) only; same client, in turns with the agents). Under it, \
             {bound:.3} ms = {floor:.3} ms for this client to posix_spawn /bin/true and wait for it + half of \
             {rtt:.3} ms, the fastest request/reply round trip of the run (socketpair with no agent: \
             {socketpair:.3} ms; p50s): on top of spawning and waiting, any agent needs the guest-exec request \
             to come in and a guest-exec-status reply to go out, two one-way trips where the waiting client \
             needed one wake-up"
        ));
    }
    if opts.wants("limit") {
        eprintln!("qga-bench: limit ...");
        for &chunk in &chunks {
            let l = transfer::limit(data, chunk)?;
            for m in r.metrics.iter_mut() {
                if m.key == format!("read_{chunk}") || m.key == format!("write_{chunk}") {
                    m.limit = Some(l);
                }
            }
            r.notes.push(format!(
                "limit at {} chunks: {l:.0} MiB/s (base64 encode + unix socketpair + decode, same client code)",
                transfer::chunk_label(chunk)
            ));
        }
    }
    if opts.wants("read") || opts.wants("write") {
        r.notes.push(format!(
            "file transfers: {} MiB file, up to 8 requests or 16 MiB in flight (at least 2), every byte checked; \
             48 MiB writes send {} bytes per request (qemu-ga's 64 MiB JSON token limit)",
            sizes.file >> 20,
            transfer::MAX_WRITE_CHUNK
        ));
    }
    r.notes
        .push(format!("run took {:.0} s", started.elapsed().as_secs_f64()));

    let labels: Vec<(usize, String)> = TARGET_CHUNKS
        .iter()
        .map(|&c| (c, transfer::chunk_label(c)))
        .collect();
    let labels: Vec<(usize, &str)> = labels.iter().map(|(c, l)| (*c, l.as_str())).collect();
    let targets = targets::evaluate(&r, &labels);
    print!("{}", r.table());
    println!();
    print!("{}", targets::print(&targets));
    println!();
    for n in &r.notes {
        println!("note: {n}");
    }
    let errors = r.errors();
    for e in &errors {
        println!("error: {e}");
    }
    if let Some(dir) = opts.json.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    std::fs::write(&opts.json, r.to_json(&targets))
        .map_err(|e| format!("writing {}: {e}", opts.json.display()))?;
    println!("results written to {}", opts.json.display());
    Ok(errors.is_empty())
}

fn record(r: &mut Report, theirs: bool, figures: Result<Figures, String>) {
    if let Ok(figures) = figures {
        for (k, v) in figures {
            r.set(&k, theirs, Ok(v));
        }
    }
}

/// How many commands `guest-info` lists.
fn command_count(a: &Agent) -> Result<f64, String> {
    let mut c = a.connect()?;
    let info = c.cmd(br#"{"execute":"guest-info"}"#)?;
    match crate::client::dict(&info)?.get("supported_commands") {
        Some(qga_proto::Value::List(l)) => Ok(l.len() as f64),
        _ => Err("guest-info without supported_commands".into()),
    }
}

/// Binary sizes and shared libraries of both agents.
fn sizes_and_libs(r: &mut Report, ours: &Path, reference: &Path) {
    let size = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| m.len() as f64)
            .map_err(|e| e.to_string())
    };
    r.set("binary", false, size(ours));
    r.set("binary", true, size(reference));
    for (name, p) in [("ours", ours), ("qemu-ga", reference)] {
        let libs = agent::shared_libs(p);
        let total: u64 = libs.iter().map(|l| l.1).sum();
        let names: Vec<&str> = libs.iter().map(|l| l.0.as_str()).collect();
        r.notes.push(format!(
            "{name} links {} shared libraries ({:.2} MB on disk): {}",
            libs.len(),
            total as f64 / 1e6,
            names.join(" ")
        ));
        if name == "ours" {
            r.extra_libs = names
                .iter()
                .filter(|n| !n.starts_with("libc.so"))
                .map(|n| n.to_string())
                .collect();
        }
    }
}

/// `qga-bench footprint`: our agent alone, idle, as `name value` lines.
pub fn footprint(opts: &Opts) -> Result<bool, String> {
    let window = Duration::from_secs_f64(opts.window.unwrap_or(2.0));
    let (ours, _) = Agent::spawn("ours", &opts.ours)?;
    let figures = workloads::idle(&[&ours], window).remove(0)?;
    for (k, v) in figures {
        println!("{k} {v}");
    }
    Ok(true)
}
