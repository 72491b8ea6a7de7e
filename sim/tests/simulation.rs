#![cfg(madsim)]
//! The simulator as CI runs it: seeds with every fault class on, determinism
//! double-runs, and the planted bugs each caught within a stated number of seeds.
//! Every seed runs in a process of its own through the `sluice-sim` binary, exactly as
//! a developer would replay it.

use std::process::Command;

const SIM: &str = env!("CARGO_BIN_EXE_sluice-sim");

fn sim(args: &[&str]) -> (bool, String) {
    let out = Command::new(SIM)
        .args(args)
        .output()
        .expect("running sluice-sim");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

fn seed_lines(text: &str) -> Vec<&str> {
    text.lines().filter(|l| l.starts_with("seed ")).collect()
}

fn ops_of(line: &str) -> usize {
    line.split(" | ")
        .find_map(|f| f.strip_prefix("ops "))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[test]
fn fifty_fixed_and_ten_fresh_seeds_with_every_fault_class_find_no_anomaly() {
    let fresh = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() % 1_000_000_000)
        + 1_000_000;
    for (start, count) in [(1u64, 50u64), (fresh, 10)] {
        let (ok, text) = sim(&[
            "run",
            "--start",
            &start.to_string(),
            "--seeds",
            &count.to_string(),
        ]);
        print!("{text}");
        assert!(
            ok,
            "anomalies found; the failing seeds' replay commands are printed above"
        );
        let lines = seed_lines(&text);
        assert_eq!(lines.len() as u64, count);
        for line in lines {
            assert!(ops_of(line) >= 1000, "fewer than 1000 operations: {line}");
            assert!(!line.contains("faults none"), "no fault injected: {line}");
        }
    }
}

#[test]
fn one_seed_run_twice_gives_the_same_history_and_trace() {
    let dir = std::env::temp_dir().join(format!("sluice-determinism-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for seed in ["7", "42", "1234"] {
        let (a, b) = (
            dir.join(format!("{seed}-a.jsonl")),
            dir.join(format!("{seed}-b.jsonl")),
        );
        let (_, first) = sim(&["replay", seed, "--history", a.to_str().unwrap()]);
        let (_, second) = sim(&["replay", seed, "--history", b.to_str().unwrap()]);
        let (ha, hb) = (std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
        assert!(
            ha.len() > 10_000,
            "seed {seed}: history too small to mean anything"
        );
        assert!(ha == hb, "seed {seed}: histories differ");
        let trace = |t: &str| {
            t.lines()
                .filter(|l| !l.starts_with("history written"))
                .collect::<Vec<_>>()
                .join("\n")
        };
        assert_eq!(trace(&first), trace(&second), "seed {seed}: traces differ");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs seeds 1..=bound with a bug planted; returns the seeds where it was caught.
fn caught(bug: &str, bound: u64, anomaly: &str) -> Vec<u64> {
    let (_, text) = sim(&[
        "run",
        "--start",
        "1",
        "--seeds",
        &bound.to_string(),
        "--bug",
        bug,
    ]);
    let failed: Vec<u64> = seed_lines(&text)
        .into_iter()
        .filter(|l| l.contains(anomaly))
        .filter_map(|l| l.strip_prefix("seed ")?.split(' ').next()?.parse().ok())
        .collect();
    println!("{bug}: caught by {anomaly} in seeds {failed:?} of 1..={bound}");
    failed
}

#[test]
fn ack_before_fsync_is_caught_as_lost_write_within_5_seeds() {
    assert!(!caught("ack-before-fsync", 5, "lost-write").is_empty());
}

#[test]
fn offset_index_off_by_one_is_caught_as_poll_skip_within_5_seeds() {
    assert!(!caught("offset-index-off-by-one", 5, "poll-skip").is_empty());
}

#[test]
fn skip_recovery_crc_is_caught_as_lost_write_within_100_seeds() {
    assert!(!caught("skip-recovery-crc", 100, "lost-write").is_empty());
}
