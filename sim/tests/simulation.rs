#![cfg(madsim)]
//! The simulator as CI runs it: seeds with every fault class on, determinism
//! double-runs, and the planted bugs each caught within a stated number of seeds.
//! Every seed runs in a process of its own through the `sluice-sim` binary, exactly as
//! a developer would replay it.

use std::collections::{BTreeMap, BTreeSet};
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

/// Runs `fixed` seeds from 1 and `fresh` from a start seed that changes every run
/// (printed), with `extra` options: every seed must be free of anomalies, do at least
/// 1,000 operations and see at least one fault.
fn seeds_find_no_anomaly(extra: &[&str], fixed: u64, fresh: u64, fresh_base: u64) {
    let fresh_start = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() % 1_000_000_000)
        + fresh_base;
    for (start, count) in [(1u64, fixed), (fresh_start, fresh)] {
        let (start, seeds) = (start.to_string(), count.to_string());
        let mut args = vec!["run", "--start", &start, "--seeds", &seeds];
        args.extend_from_slice(extra);
        let (ok, text) = sim(&args);
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
fn single_node_seeds_find_no_anomaly() {
    // Every fault class on, then swarm testing (each class on or off, weights and
    // pace drawn per seed): 100 swarm seeds, 95 fixed and 5 fresh.
    seeds_find_no_anomaly(&[], 30, 0, 0);
    seeds_find_no_anomaly(&["--swarm"], 95, 5, 1_000_000);
}

#[test]
fn kip848_group_seeds_find_no_anomaly() {
    // The consumer-group runner: KIP-848 members crash, pause into zombies and are
    // fenced while the broker is crashed, killed, paused and cut off.
    seeds_find_no_anomaly(&["--groups"], 60, 0, 0);
    seeds_find_no_anomaly(&["--groups", "--swarm"], 140, 10, 3_000_000);
}

#[test]
fn kip848_migration_seeds_find_no_anomaly() {
    // The same runner with members speaking either protocol, drawn per incarnation:
    // live upgrades, mixed groups and downgrades under the same faults and checkers.
    seeds_find_no_anomaly(&["--groups", "--migrate"], 60, 0, 0);
    seeds_find_no_anomaly(&["--groups", "--migrate", "--swarm"], 140, 10, 5_000_000);
}

/// The KIP-848 planted bugs, each with the checker that must catch it within the
/// seeds given, in the consumer-group runner (with mixed protocols for the online
/// migration's bug).
#[test]
fn kip848_planted_bugs_are_caught() {
    for (bug, anomaly, bound, migrate) in [
        ("partition-owned-twice", "double-ownership", 5, false),
        ("assignor-skips-partition", "unowned-partition", 5, false),
        ("stale-commit-accepted", "nonmonotonic-commit", 20, false),
        (
            "upgrade-forgets-held-partitions",
            "double-ownership",
            5,
            true,
        ),
    ] {
        let bound_s = bound.to_string();
        let mut args = vec![
            "run", "--start", "1", "--seeds", &bound_s, "--bug", bug, "--groups",
        ];
        if migrate {
            args.push("--migrate");
        }
        let (_, text) = sim(&args);
        let caught: Vec<&str> = seed_lines(&text)
            .into_iter()
            .filter(|l| {
                l.split(" | ")
                    .find_map(|f| f.strip_prefix("anomalies "))
                    .is_some_and(|k| k.split(' ').any(|k| k.starts_with(&format!("{anomaly}:"))))
            })
            .collect();
        println!(
            "{bug}: caught by {anomaly} in {} of {bound} seeds",
            caught.len()
        );
        assert!(
            !caught.is_empty(),
            "{bug} was not caught as {anomaly} within {bound} seeds:\n{text}"
        );
    }
}

#[test]
fn share_group_seeds_find_no_anomaly() {
    // The share-group runner (KIP-932): members crash holding records, pause past their
    // locks, and have their sessions cut while the broker is crashed, killed, paused and
    // cut off; after the heal they drain the topic.
    seeds_find_no_anomaly(&["--share"], 60, 0, 0);
    seeds_find_no_anomaly(&["--share", "--swarm"], 140, 10, 4_000_000);
}

/// The share-group planted bugs, each with the checker that must catch it.
#[test]
fn share_group_planted_bugs_are_caught() {
    for (bug, anomaly, bound) in [
        ("share-ack-not-durable", "share-redelivered", 5),
        ("share-release-archives", "share-lost", 5),
    ] {
        let bound_s = bound.to_string();
        let (_, text) = sim(&[
            "run", "--start", "1", "--seeds", &bound_s, "--bug", bug, "--share",
        ]);
        let caught = seed_lines(&text)
            .into_iter()
            .filter(|l| {
                l.split(" | ")
                    .find_map(|f| f.strip_prefix("anomalies "))
                    .is_some_and(|k| k.split(' ').any(|k| k.starts_with(&format!("{anomaly}:"))))
            })
            .count();
        println!("{bug}: caught by {anomaly} in {caught} of {bound} seeds");
        assert!(
            caught > 0,
            "{bug} was not caught as {anomaly} within {bound} seeds:\n{text}"
        );
    }
}

#[test]
fn cluster_seeds_find_no_anomaly() {
    seeds_find_no_anomaly(&["--cluster"], 30, 0, 0);
    seeds_find_no_anomaly(&["--cluster", "--swarm"], 95, 5, 2_000_000);
}

/// Issue 15: acknowledged writes lost under partition reassignment. Cluster seeds
/// 401041, 401469 and 401836 lost hundreds of acknowledged records under the fault
/// model that found them (`--classic`; docs/simulation.md, bug 17). They stay here as
/// regression scenarios under that model. (The fix reverted is the planted bug
/// `removed-replica-keeps-epoch`, a race soaks run: see below; the rule itself has a
/// deterministic unit test in core, `removing_a_replica_bumps_the_leader_epoch_even_
/// when_the_leader_stays`.)
#[test]
fn issue_15_seeds_are_clean_under_the_model_that_found_them() {
    for seed in ["401041", "401469", "401836"] {
        let (ok, text) = sim(&["replay", seed, "--cluster", "--classic"]);
        assert!(
            ok,
            "cluster seed {seed} (classic): {}",
            seed_lines(&text).join("\n")
        );
        assert!(ops_of(seed_lines(&text)[0]) >= 1000);
    }
}

/// Swarm seeds the soaks failed on, kept as regression scenarios (docs/simulation.md,
/// bugs 26, 27, 29 and 31): torn transactions from a second marker writer (single
/// 7000577, 7001317), a misread leader epoch in recovery (single 7002036), a
/// truncation cut short by a misread batch header (cluster 8002830, 8003752), a log
/// start that went back after DeleteRecords retried a failed checkpoint fsync (single
/// 21000111, 21000181).
#[test]
fn soak_seeds_stay_clean() {
    for (seed, runner) in [
        ("7000577", None),
        ("7001317", None),
        ("7002036", None),
        ("8002830", Some("--cluster")),
        ("8003752", Some("--cluster")),
        ("21000111", None),
        ("21000181", None),
    ] {
        let mut args = vec!["replay", seed, "--swarm"];
        args.extend(runner);
        let (ok, text) = sim(&args);
        assert!(ok, "seed {seed}: {}", seed_lines(&text).join("\n"));
        assert!(ops_of(seed_lines(&text)[0]) >= 1000);
    }
}

#[test]
fn one_cluster_seed_run_twice_gives_the_same_history_and_trace() {
    let dir =
        std::env::temp_dir().join(format!("sluice-cluster-determinism-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let seed = "5";
    let (a, b) = (dir.join("a.jsonl"), dir.join("b.jsonl"));
    let (_, first) = sim(&[
        "replay",
        seed,
        "--cluster",
        "--history",
        a.to_str().unwrap(),
    ]);
    let (_, second) = sim(&[
        "replay",
        seed,
        "--cluster",
        "--history",
        b.to_str().unwrap(),
    ]);
    let (ha, hb) = (std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    assert!(ha.len() > 10_000, "history too small to mean anything");
    assert!(ha == hb, "cluster seed {seed}: histories differ");
    let trace = |t: &str| {
        t.lines()
            .filter(|l| !l.starts_with("history written"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(
        trace(&first),
        trace(&second),
        "cluster seed {seed}: traces differ"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn one_seed_run_twice_gives_the_same_history_and_trace() {
    let dir = std::env::temp_dir().join(format!("sluice-determinism-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (seed, mode) in [
        ("7", None),
        ("42", None),
        ("1234", None),
        ("99", Some(&["--groups"][..])),
        ("5", Some(&["--groups", "--migrate"][..])),
        ("77", Some(&["--share"][..])),
    ] {
        let (a, b) = (
            dir.join(format!("{seed}-a.jsonl")),
            dir.join(format!("{seed}-b.jsonl")),
        );
        let replay = |path: &std::path::Path| {
            let mut args = vec!["replay", seed, "--history", path.to_str().unwrap()];
            args.extend(mode.into_iter().flatten());
            sim(&args)
        };
        let (_, first) = replay(&a);
        let (_, second) = replay(&b);
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

/// Runs seeds 1..=bound with a bug planted (in the cluster simulation when
/// `cluster`): the anomaly kinds each seed reported.
fn anomalies(bug: &str, bound: u64, cluster: bool) -> Vec<(u64, BTreeSet<String>)> {
    let bound = bound.to_string();
    let mut args = vec!["run", "--start", "1", "--seeds", &bound, "--bug", bug];
    if cluster {
        args.push("--cluster");
    }
    let (_, text) = sim(&args);
    seed_lines(&text)
        .into_iter()
        .filter_map(|l| {
            let seed = l.strip_prefix("seed ")?.split(' ').next()?.parse().ok()?;
            let kinds = l.split(" | ").find_map(|f| f.strip_prefix("anomalies "))?;
            let kinds = kinds
                .split(' ')
                .filter_map(|k| k.split_once(':'))
                .map(|(k, _)| k.to_string())
                .collect();
            Some((seed, kinds))
        })
        .collect()
}

/// Each planted bug, the anomaly that must catch it, and the seeds it gets to do so;
/// the last ones in the cluster simulation.
const CLUSTER_BUGS: usize = 6;
const PLANTED: [(&str, &str, u64); 20 + CLUSTER_BUGS] = [
    ("ack-before-fsync", "lost-write", 5),
    ("offset-index-off-by-one", "poll-skip", 5),
    ("skip-recovery-crc", "lost-write", 100),
    ("duplicate-on-roll", "duplicate", 5),
    ("serve-batch-twice", "int-nonmonotonic-poll", 5),
    ("read-drops-batch", "int-poll-skip", 5),
    ("consumer-rewinds", "nonmonotonic-poll", 5),
    ("sync-same-assignment", "split-ownership", 5),
    ("generation-not-bumped", "nonmonotonic-generation", 5),
    ("stale-commit-accepted", "nonmonotonic-commit", 20),
    ("offset-fetch-past-commit", "skipped-by-commit", 5),
    ("skip-producer-dedup", "duplicate", 40),
    ("aborted-list-dropped", "aborted-read", 5),
    ("read-past-lso", "precommitted-read", 5),
    ("markers-before-prepare", "torn-transaction", 100),
    ("txn-offsets-ignore-abort", "exactly-once", 5),
    ("cleaner-keeps-oldest", "compaction", 5),
    ("tombstone-dropped-early", "compaction", 5),
    ("swap-before-sync", "compaction", 5),
    ("retention-past-hw", "log-start", 20),
    ("hw-before-isr", "lost-write", 5),
    ("elect-outside-isr", "lost-write", 40),
    ("skip-epoch-truncation", "replica-divergence", 5),
    ("epoch-not-bumped", "leader-epoch", 5),
    ("hw-goes-back", "hw-regressed", 5),
    ("stale-hw-after-election", "nonmonotonic-hw", 5),
];
// follower-end-unchecked, unchecked-batch-epoch, stale-isr-answer-clears,
// raft-store-trusts-page-cache, cleaner-trusts-headers and removed-replica-keeps-epoch
// (the fixes of docs/simulation.md bugs 17, 18, 20, 23, 24, 27, 28 and 30 reverted)
// are narrow races the soaks found once each; no fixed seed range
// catches them reliably, so they are run in soaks (`sluice-sim run --cluster --swarm
// --bug NAME`), not here; each has a deterministic test of its own where one could be
// written (sim/tests/storage_crash.rs).

#[test]
fn planted_bugs_are_caught_within_their_bounds_and_every_checker_catches_one() {
    let mut fired: BTreeMap<String, BTreeSet<&str>> = BTreeMap::new();
    for (i, (bug, anomaly, bound)) in PLANTED.into_iter().enumerate() {
        let seeds = anomalies(bug, bound, i >= PLANTED.len() - CLUSTER_BUGS);
        let caught: Vec<u64> = seeds
            .iter()
            .filter(|(_, k)| k.contains(anomaly))
            .map(|(s, _)| *s)
            .collect();
        println!("{bug}: caught by {anomaly} in seeds {caught:?} of 1..={bound}");
        assert!(
            !caught.is_empty(),
            "{bug} was not caught as {anomaly} within {bound} seeds"
        );
        for (_, kinds) in seeds {
            for k in kinds {
                fired.entry(k).or_default().insert(bug);
            }
        }
    }
    println!("checkers and the planted bugs they caught: {fired:?}");
    for checker in [
        "lost-write",
        "unseen",
        "duplicate",
        "inconsistent-offsets",
        "nonmonotonic-send",
        "nonmonotonic-poll",
        "int-nonmonotonic-poll",
        "poll-skip",
        "int-poll-skip",
        "nonmonotonic-hw",
        "split-ownership",
        "nonmonotonic-generation",
        "nonmonotonic-commit",
        "skipped-by-commit",
        "aborted-read",
        "torn-transaction",
        "precommitted-read",
        "exactly-once",
        "compaction",
        "log-start",
        "leader-epoch",
        "hw-regressed",
        "replica-divergence",
    ] {
        assert!(
            fired.contains_key(checker),
            "{checker} never caught a planted bug"
        );
    }
}
