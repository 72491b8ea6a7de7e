//! Hooks for the simulator, compiled to nothing outside it.
//!
//! `buggify!()` marks a place where the simulator may inject a rare but legal
//! behaviour (a tiny buffer, an early segment roll, a delay, a retriable error), as in
//! FoundationDB. Planted bugs are deliberate defects that tests switch on one at a time
//! to show the checkers catch them; they exist only in simulator builds.

/// True now and then under the simulator (when buggify is enabled); always false in
/// production builds. Each point is known by its place in the source; the simulator
/// counts the points a run reached and fired (FoundationDB's CODE_PROBE idea).
#[macro_export]
macro_rules! buggify {
    () => {
        $crate::sim::buggify_fires(concat!(file!(), ":", line!()), 0.25)
    };
    ($probability:expr) => {
        $crate::sim::buggify_fires(concat!(file!(), ":", line!()), $probability)
    };
}

/// A buggify point that stalls the task for up to `max_ms` (a slow disk, a GC pause, a
/// congested link): legal anywhere, and it widens the windows races live in. Takes
/// the `Env`, whose clock and randomness it uses.
#[macro_export]
macro_rules! buggify_sleep {
    ($env:expr, $max_ms:expr) => {
        if $crate::buggify!(0.05) {
            let ms = $env.random_below($max_ms);
            $env.clock.sleep(std::time::Duration::from_millis(ms)).await;
        }
    };
}

#[cfg(madsim)]
mod buggify_state {
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Mutex;

    static ENABLED: AtomicBool = AtomicBool::new(false);
    /// Per point: (times reached, times fired).
    static POINTS: Mutex<BTreeMap<&'static str, (u64, u64)>> = Mutex::new(BTreeMap::new());

    pub fn enable(on: bool) {
        ENABLED.store(on, Ordering::SeqCst);
    }

    pub fn fires(point: &'static str, probability: f64) -> bool {
        use madsim::rand::Rng;
        let on = ENABLED.load(Ordering::SeqCst);
        // madsim's seeded generator (the simulator's randomness, as madsim's own
        // buggify used), drawn only when enabled: a run without buggify keeps its
        // schedule. Only simulator builds compile this.
        let fired = on && madsim::rand::thread_rng().gen_bool(probability.clamp(0.0, 1.0));
        let mut g = POINTS.lock().unwrap_or_else(|p| p.into_inner());
        let e = g.entry(point).or_default();
        e.0 += 1;
        e.1 += u64::from(fired);
        fired
    }

    pub fn take() -> BTreeMap<&'static str, (u64, u64)> {
        std::mem::take(&mut *POINTS.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

#[cfg(madsim)]
pub fn buggify_fires(point: &'static str, probability: f64) -> bool {
    buggify_state::fires(point, probability)
}

#[cfg(not(madsim))]
#[inline(always)]
pub fn buggify_fires(_point: &'static str, _probability: f64) -> bool {
    false
}

/// Turns the project's buggify points on or off for this run (simulator builds only).
#[cfg(madsim)]
pub fn enable_buggify(on: bool) {
    buggify_state::enable(on);
}

/// The buggify points reached since the last call: point -> (reached, fired).
#[cfg(madsim)]
pub fn take_buggify_points() -> std::collections::BTreeMap<&'static str, (u64, u64)> {
    buggify_state::take()
}

/// Deliberate defects for checking the checkers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Bug {
    /// Publish the high watermark (and acknowledge) without fsyncing.
    AckBeforeFsync,
    /// Recovery accepts batches without checking their CRC.
    SkipRecoveryCrc,
    /// The offset index answers with the entry after the right one.
    OffsetIndexOffByOne,
    /// An append that rolls the segment writes its batches twice (a retry that
    /// forgets the first write landed).
    DuplicateOnRoll,
    /// A fetch serves its first batch again at the end.
    ServeBatchTwice,
    /// SyncGroup hands every member the leader's own assignment.
    SyncSameAssignment,
    /// A completed rebalance keeps the old generation number.
    GenerationNotBumped,
    /// OffsetCommit skips the member and generation checks (zombies commit).
    StaleCommitAccepted,
    /// OffsetFetch answers one past the committed offset.
    OffsetFetchPastCommit,
    /// An idempotent producer's retried batch is stored again.
    SkipProducerDedup,
    /// Transaction markers are written before the Prepare record is durable.
    MarkersBeforePrepare,
    /// read_committed fetches leave out the aborted transactions.
    AbortedListDropped,
    /// read_committed fetches read up to the high watermark, past open transactions.
    ReadPastLso,
    /// Offsets committed in a transaction apply even when it aborts.
    TxnOffsetsIgnoreAbort,
    /// The leader advances the high watermark without waiting for the ISR.
    HwBeforeIsr,
    /// A fenced leader's successor may be any live replica, in the ISR or not.
    ElectOutsideIsr,
    /// A follower of a new leader epoch fetches on without truncating its log.
    SkipEpochTruncation,
    /// A leader change keeps the old leader epoch.
    EpochNotBumped,
    /// A replica takes whatever high watermark it is told, lower or not.
    HwGoesBack,
    /// A reassignment that removes a replica (not the leader) keeps the leader epoch,
    /// so the removed replica's fetches are not fenced (issue 15's root cause).
    RemovedReplicaKeepsEpoch,
    /// A new leader serves consumers before its high watermark reaches its epoch
    /// start offset, so the high watermark they see can go back.
    StaleHwAfterElection,
    /// A read of three or more batches leaves out its second one.
    ReadDropsBatch,
    /// The simulator's consumers resume one record back after a failed poll (a client
    /// that loses its position on reconnect; the checker of consumers' order must
    /// see it).
    ConsumerRewinds,
    /// A leader takes a follower's fetch offset past its own log end as progress, and
    /// a follower of an old epoch may report the log end a newer epoch's fetcher made.
    FollowerEndUnchecked,
    /// Reads serve a batch whatever partition leader epoch its header holds, a
    /// truncation trusts the base offsets it reads, and recovery puts a newer epoch
    /// read once into the epoch cache: fields the CRC does not cover.
    UncheckedBatchEpoch,
    /// The metadata log store opens on what the page cache holds without making it
    /// durable: entries whose fsync failed are acknowledged after a restart.
    RaftStoreTrustsPageCache,
    /// A refused ISR change clears whatever ISR change is pending, a newer one too.
    StaleIsrAnswerClears,
    /// The cleaner keeps each key's oldest record instead of its newest.
    CleanerKeepsOldest,
    /// The cleaner removes tombstones on its first pass, before delete.retention.ms.
    TombstoneDroppedEarly,
    /// Retention and DeleteRecords move the log start past the high watermark.
    RetentionPastHw,
    /// The cleaner publishes its cleaned segment (the swap) before syncing it.
    SwapBeforeSync,
    /// The cleaner copies batch fields the CRC does not cover (base offset, leader
    /// epoch) as it read them once.
    CleanerTrustsHeaders,
    /// KIP-848 reconciliation gives a member the partitions of its target that another
    /// member still owns, without waiting for their release.
    PartitionOwnedTwice,
    /// The `uniform` assignor leaves each topic's last partition to nobody (an
    /// off-by-one).
    AssignorSkipsPartition,
    /// Share-group acknowledgements are answered without their state being written to
    /// `__share_group_state` (KIP-932).
    ShareAckNotDurable,
    /// A share-group record a member releases is archived instead of made available
    /// again.
    ShareReleaseArchives,
    /// KIP-848's online upgrade forgets what the classic members hold: their
    /// partitions go to the consumer-protocol newcomer before they let them go.
    UpgradeForgetsHeldPartitions,
}

impl Bug {
    pub const ALL: [Bug; 37] = [
        Bug::AckBeforeFsync,
        Bug::SkipRecoveryCrc,
        Bug::OffsetIndexOffByOne,
        Bug::DuplicateOnRoll,
        Bug::ServeBatchTwice,
        Bug::SyncSameAssignment,
        Bug::GenerationNotBumped,
        Bug::StaleCommitAccepted,
        Bug::OffsetFetchPastCommit,
        Bug::SkipProducerDedup,
        Bug::MarkersBeforePrepare,
        Bug::AbortedListDropped,
        Bug::ReadPastLso,
        Bug::TxnOffsetsIgnoreAbort,
        Bug::HwBeforeIsr,
        Bug::ElectOutsideIsr,
        Bug::SkipEpochTruncation,
        Bug::EpochNotBumped,
        Bug::HwGoesBack,
        Bug::RemovedReplicaKeepsEpoch,
        Bug::StaleHwAfterElection,
        Bug::ReadDropsBatch,
        Bug::ConsumerRewinds,
        Bug::FollowerEndUnchecked,
        Bug::UncheckedBatchEpoch,
        Bug::RaftStoreTrustsPageCache,
        Bug::StaleIsrAnswerClears,
        Bug::CleanerKeepsOldest,
        Bug::TombstoneDroppedEarly,
        Bug::RetentionPastHw,
        Bug::SwapBeforeSync,
        Bug::CleanerTrustsHeaders,
        Bug::PartitionOwnedTwice,
        Bug::AssignorSkipsPartition,
        Bug::ShareAckNotDurable,
        Bug::ShareReleaseArchives,
        Bug::UpgradeForgetsHeldPartitions,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Bug::AckBeforeFsync => "ack-before-fsync",
            Bug::SkipRecoveryCrc => "skip-recovery-crc",
            Bug::OffsetIndexOffByOne => "offset-index-off-by-one",
            Bug::DuplicateOnRoll => "duplicate-on-roll",
            Bug::ServeBatchTwice => "serve-batch-twice",
            Bug::SyncSameAssignment => "sync-same-assignment",
            Bug::GenerationNotBumped => "generation-not-bumped",
            Bug::StaleCommitAccepted => "stale-commit-accepted",
            Bug::OffsetFetchPastCommit => "offset-fetch-past-commit",
            Bug::SkipProducerDedup => "skip-producer-dedup",
            Bug::MarkersBeforePrepare => "markers-before-prepare",
            Bug::AbortedListDropped => "aborted-list-dropped",
            Bug::ReadPastLso => "read-past-lso",
            Bug::TxnOffsetsIgnoreAbort => "txn-offsets-ignore-abort",
            Bug::HwBeforeIsr => "hw-before-isr",
            Bug::ElectOutsideIsr => "elect-outside-isr",
            Bug::SkipEpochTruncation => "skip-epoch-truncation",
            Bug::EpochNotBumped => "epoch-not-bumped",
            Bug::HwGoesBack => "hw-goes-back",
            Bug::RemovedReplicaKeepsEpoch => "removed-replica-keeps-epoch",
            Bug::StaleHwAfterElection => "stale-hw-after-election",
            Bug::ReadDropsBatch => "read-drops-batch",
            Bug::ConsumerRewinds => "consumer-rewinds",
            Bug::FollowerEndUnchecked => "follower-end-unchecked",
            Bug::UncheckedBatchEpoch => "unchecked-batch-epoch",
            Bug::RaftStoreTrustsPageCache => "raft-store-trusts-page-cache",
            Bug::StaleIsrAnswerClears => "stale-isr-answer-clears",
            Bug::CleanerKeepsOldest => "cleaner-keeps-oldest",
            Bug::TombstoneDroppedEarly => "tombstone-dropped-early",
            Bug::RetentionPastHw => "retention-past-hw",
            Bug::SwapBeforeSync => "swap-before-sync",
            Bug::CleanerTrustsHeaders => "cleaner-trusts-headers",
            Bug::PartitionOwnedTwice => "partition-owned-twice",
            Bug::AssignorSkipsPartition => "assignor-skips-partition",
            Bug::ShareAckNotDurable => "share-ack-not-durable",
            Bug::ShareReleaseArchives => "share-release-archives",
            Bug::UpgradeForgetsHeldPartitions => "upgrade-forgets-held-partitions",
        }
    }

    pub fn parse(name: &str) -> Option<Bug> {
        Bug::ALL.into_iter().find(|b| b.name() == name)
    }
}

#[cfg(madsim)]
mod planted_state {
    use std::sync::atomic::{AtomicU64, Ordering};
    static PLANTED: AtomicU64 = AtomicU64::new(0);
    pub fn set(bugs: u64) {
        PLANTED.store(bugs, Ordering::SeqCst);
    }
    pub fn get() -> u64 {
        PLANTED.load(Ordering::SeqCst)
    }
}

/// Switches planted bugs on (simulator builds only).
#[cfg(madsim)]
pub fn plant(bugs: &[Bug]) {
    planted_state::set(bugs.iter().fold(0, |acc, b| acc | 1 << *b as u64));
}

/// Whether a planted bug is switched on; always false in production builds.
#[inline(always)]
pub fn planted(bug: Bug) -> bool {
    #[cfg(madsim)]
    {
        planted_state::get() & (1 << bug as u64) != 0
    }
    #[cfg(not(madsim))]
    {
        let _ = bug;
        false
    }
}

/// Records a broker-side event (a leader or ISR change, a truncation, a reassignment
/// step) in the simulator's trace, with its simulated time. Outside the simulator the
/// arguments are not even evaluated. Recording takes no lock a task could wait on and
/// draws no randomness, so it leaves the schedule as it was.
#[macro_export]
macro_rules! sim_event {
    ($($arg:tt)*) => {
        #[cfg(madsim)]
        {
            $crate::sim::record_event(format!($($arg)*));
        }
    };
}

#[cfg(madsim)]
static EVENTS: std::sync::Mutex<Vec<(madsim::time::Instant, String)>> =
    std::sync::Mutex::new(Vec::new());

/// Appends an event, stamped with the simulated time.
#[cfg(madsim)]
pub fn record_event(line: String) {
    // The simulated clock: the simulator's own time, not the host's.
    let now = madsim::time::Instant::now();
    if live_trace() {
        eprintln!("{:?} {line}", now);
    }
    EVENTS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push((now, line));
}

/// Whether SLUICE_SIM_LIVE asks for trace lines and events on stderr as they happen (a
/// run that never ends has no trace to print). Printing does not touch the
/// simulation's state.
#[cfg(madsim)]
pub fn live_trace() -> bool {
    static LIVE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *LIVE.get_or_init(|| std::env::var_os("SLUICE_SIM_LIVE").is_some())
}

/// Takes the events recorded so far (simulator builds only).
#[cfg(madsim)]
pub fn take_events() -> Vec<(madsim::time::Instant, String)> {
    std::mem::take(&mut *EVENTS.lock().unwrap_or_else(|p| p.into_inner()))
}
