//! `sluice-sim run [--seeds N] [--start S] [--jobs J] [--sends N] [--bug NAME]
//! [--swarm] [--cluster | --groups [--migrate] | --share]`: runs seeds (J at a time, each in its own process; J is the
//! number of CPUs unless given) and prints, per seed, the scenario, operations, faults, anomalies and trace
//! hash. `sluice-sim replay SEED [--history FILE]`: runs one seed again and prints its
//! trace (and writes its history). Build with `RUSTFLAGS="--cfg madsim"`.
//!
//! Each seed runs in a process of its own (`sluice-sim one SEED`): state that outlives
//! a madsim runtime inside one process (std's per-thread hash keys among it) would
//! otherwise make a seed's outcome depend on the seeds before it, and the printed
//! replay command would not reproduce it.

#[cfg(not(madsim))]
fn main() {
    eprintln!("sluice-sim runs only in the simulator build:");
    eprintln!("  RUSTFLAGS=\"--cfg madsim\" CARGO_TARGET_DIR=target/madsim cargo run --release -p sluice-sim -- run --seeds 10");
    std::process::exit(2);
}

#[cfg(madsim)]
fn main() {
    use sluice_core::sim::Bug;
    use sluice_sim::run::{run_seed, Options};

    if let Ok(filter) = std::env::var("SLUICE_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::stderr)
            .without_time()
            .init();
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let has = |name: &str| args.iter().any(|a| a == name);
    let mut opts = Options::default();
    if let Some(n) = flag("--sends") {
        opts.sends_per_producer = n.parse().expect("--sends takes a number");
    }
    if has("--swarm") {
        opts.all_faults = false;
    }
    if has("--classic") {
        opts.classic = true;
    }
    if has("--migrate") {
        opts.migrate = true;
    }
    if let Some(b) = flag("--bug") {
        opts.bugs = vec![Bug::parse(&b)
            .unwrap_or_else(|| panic!("unknown bug {b}; one of {:?}", Bug::ALL.map(Bug::name)))];
    }
    // The per-seed options: everything after the command but the seed range. Each
    // seed's process gets them, and so does the replay command printed for it.
    let mut per_seed = Vec::new();
    let mut rest = args.iter().skip(1);
    while let Some(a) = rest.next() {
        if a == "--seeds" || a == "--start" || a == "--jobs" || a == "--seed-timeout" {
            rest.next();
        } else {
            per_seed.push(a.clone());
        }
    }
    match args.first().map(String::as_str) {
        Some("run") => {
            let seeds: u64 =
                flag("--seeds").map_or(10, |n| n.parse().expect("--seeds takes a number"));
            let start: u64 =
                flag("--start").map_or(1, |n| n.parse().expect("--start takes a number"));
            let jobs: usize = flag("--jobs").map_or_else(
                || std::thread::available_parallelism().map_or(1, |n| n.get()),
                |n| n.parse().expect("--jobs takes a number"),
            );
            // A seed that does not end is a failure too (a hang, or memory growing
            // without bound), not a stalled run.
            let seed_timeout = std::time::Duration::from_secs(
                flag("--seed-timeout")
                    .map_or(120, |n| n.parse().expect("--seed-timeout takes seconds")),
            );
            let mut failed = Vec::new();
            let t = std::time::Instant::now();
            let exe = std::env::current_exe().expect("locating sluice-sim");
            // `jobs` seeds at once, each in its own process; reports in seed order.
            let next = std::sync::atomic::AtomicU64::new(start);
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::scope(|scope| {
                for _ in 0..jobs.max(1) {
                    let (tx, next, exe, per_seed) = (tx.clone(), &next, &exe, &per_seed);
                    scope.spawn(move || loop {
                        let seed = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        if seed >= start + seeds {
                            break;
                        }
                        let out = run_one(exe, seed, per_seed, seed_timeout);
                        if tx.send((seed, out)).is_err() {
                            break;
                        }
                    });
                }
                drop(tx);
                let mut done = std::collections::BTreeMap::new();
                let mut printed = start;
                for (seed, out) in rx {
                    done.insert(seed, out);
                    while let Some(out) = done.remove(&printed) {
                        print!("{}", String::from_utf8_lossy(&out.stdout));
                        if !out.passed {
                            eprint!("{}", String::from_utf8_lossy(&out.stderr));
                            println!(
                                "  replay: RUSTFLAGS=\"--cfg madsim\" CARGO_TARGET_DIR=target/madsim cargo run --release -p sluice-sim -- replay {printed} {}",
                                per_seed.join(" ")
                            );
                            failed.push(printed);
                        }
                        printed += 1;
                    }
                }
            });
            println!(
                "{seeds} seeds in {:.1} s ({:.2} s/seed); {} failed {:?}",
                t.elapsed().as_secs_f64(),
                t.elapsed().as_secs_f64() / seeds.max(1) as f64,
                failed.len(),
                failed
            );
            std::process::exit(i32::from(!failed.is_empty()));
        }
        // `one` is what `run` starts per seed; `replay` adds the trace and the history.
        Some(command @ ("one" | "replay")) => {
            let seed: u64 = args
                .get(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("{command} takes a seed"));
            let replay = command == "replay";
            let r = if has("--cluster") {
                sluice_sim::cluster::run_cluster_seed(seed, &opts)
            } else if has("--groups") {
                sluice_sim::kip848::run_groups_seed(seed, &opts)
            } else if has("--share") {
                sluice_sim::share::run_share_seed(seed, &opts)
            } else {
                run_seed(seed, &opts)
            };
            if replay {
                print!("{}", r.trace);
                for (point, (reached, fired)) in &r.points {
                    println!("buggify point {point}: reached {reached}, fired {fired}");
                }
            }
            println!("{}", r.summary());
            if replay || !r.valid() {
                print!("{}", r.report.render(if replay { 10 } else { 3 }));
            }
            if let Some(path) = flag("--history") {
                std::fs::write(&path, &r.history).expect("writing the history");
                println!("history written to {path} (check it with: cargo run -p jepsen-checks --bin jepsen-check -- {path})");
            }
            std::process::exit(i32::from(!r.valid()));
        }
        _ => {
            eprintln!(
                "usage: sluice-sim run [--seeds N] [--start S] [--jobs J] [--sends N] [--bug NAME] [--swarm] [--cluster [--classic] | --groups [--migrate] | --share]"
            );
            eprintln!(
                "       sluice-sim replay SEED [--history FILE] [--bug NAME] [--swarm] [--cluster [--classic] | --groups [--migrate] | --share]"
            );
            std::process::exit(2);
        }
    }
}

/// What one seed's process printed, and whether it passed.
#[cfg(madsim)]
struct SeedRun {
    passed: bool,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

/// Runs one seed in a process of its own; one that outlives `limit` is killed and
/// reported as failed, with what it printed.
#[cfg(madsim)]
fn run_one(
    exe: &std::path::Path,
    seed: u64,
    args: &[String],
    limit: std::time::Duration,
) -> SeedRun {
    use std::io::Read;
    use std::process::{Command, Stdio};
    let mut child = Command::new(exe)
        .arg("one")
        .arg(seed.to_string())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running a seed");
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let started = std::time::Instant::now();
    let passed = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break Some(status.success());
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let mut stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    if passed.is_none() {
        stdout.extend_from_slice(
            format!(
                "seed {seed} | killed after {} s of wall time | anomalies liveness: the seed did not end\n",
                limit.as_secs()
            )
            .as_bytes(),
        );
    }
    SeedRun {
        passed: passed.unwrap_or(false),
        stdout,
        stderr,
    }
}
