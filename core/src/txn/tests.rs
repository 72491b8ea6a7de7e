use super::*;

fn tp(t: &str, p: i32) -> (String, i32) {
    (t.to_string(), p)
}

fn markers(effects: &[TxnEffect]) -> Vec<(bool, Vec<(String, i32)>)> {
    effects
        .iter()
        .filter_map(|e| match e {
            TxnEffect::WriteMarkers {
                commit, partitions, ..
            } => Some((*commit, partitions.clone())),
            _ => None,
        })
        .collect()
}

fn states(effects: &[TxnEffect]) -> Vec<TxnState> {
    effects
        .iter()
        .filter_map(|e| match e {
            TxnEffect::Persist(r) => r.value.as_ref().map(|v| v.state),
            _ => None,
        })
        .collect()
}

#[test]
fn a_transaction_commits_through_prepare_markers_complete() {
    let mut c = TxnCoordinator::new(900_000);
    let (pid, epoch) = c.init_producer_id(0, "tx", 60_000, 7).unwrap();
    assert_eq!((pid, epoch), (7, 0));
    c.add_partitions(1, "tx", pid, epoch, &[tp("a", 0), tp("a", 1)])
        .unwrap();
    c.add_partitions(2, "tx", pid, epoch, &[tp("a", 0)])
        .unwrap();
    assert_eq!(
        states(&c.take_effects()),
        vec![TxnState::Empty, TxnState::Ongoing]
    );
    assert_eq!(c.verify_partition(pid, epoch, "a", 1), Ok(()));
    assert_eq!(
        c.verify_partition(pid, epoch, "b", 0),
        Err(TxnError::InvalidTxnState)
    );
    assert_eq!(c.end(3, "tx", pid, epoch, true), Ok(Ended::Pending));
    let effects = c.take_effects();
    assert_eq!(states(&effects), vec![TxnState::PrepareCommit]);
    assert!(
        matches!(effects[0], TxnEffect::Persist(_)),
        "prepare is stored before markers"
    );
    assert_eq!(
        markers(&effects),
        vec![(true, vec![tp("a", 0), tp("a", 1)])]
    );
    assert_eq!(
        c.end(4, "tx", pid, epoch, true),
        Err(TxnError::ConcurrentTransactions)
    );
    assert!(c.markers_written(5, "tx", writers(&effects)[0]));
    assert_eq!(states(&c.take_effects()), vec![TxnState::CompleteCommit]);
    assert_eq!(
        c.end(6, "tx", pid, epoch, true),
        Ok(Ended::Done),
        "a retried commit"
    );
    assert_eq!(
        c.end(6, "tx", pid, epoch, false),
        Err(TxnError::InvalidTxnState)
    );
    assert_eq!(
        c.verify_partition(pid, epoch, "a", 0),
        Err(TxnError::InvalidTxnState)
    );
}

#[test]
fn a_new_producer_fences_the_old_and_aborts_its_transaction() {
    let mut c = TxnCoordinator::new(900_000);
    let (pid, e0) = c.init_producer_id(0, "tx", 60_000, 7).unwrap();
    c.add_partitions(1, "tx", pid, e0, &[tp("a", 0)]).unwrap();
    c.take_effects();
    assert_eq!(
        c.init_producer_id(2, "tx", 60_000, 8),
        Err(TxnError::ConcurrentTransactions)
    );
    let effects = c.take_effects();
    assert_eq!(markers(&effects), vec![(false, vec![tp("a", 0)])]);
    let fenced_epoch = c.get("tx").unwrap().epoch;
    assert_eq!(fenced_epoch, e0 + 1);
    assert!(c.markers_written(3, "tx", writers(&effects)[0]));
    let (pid2, e2) = c.init_producer_id(4, "tx", 60_000, 8).unwrap();
    assert_eq!((pid2, e2), (pid, e0 + 2));
    assert_eq!(
        c.add_partitions(5, "tx", pid, e0, &[tp("a", 0)]),
        Err(TxnError::ProducerFenced)
    );
    assert_eq!(c.end(5, "tx", pid, e0, true), Err(TxnError::ProducerFenced));
    assert_eq!(
        c.add_partitions(5, "tx", 99, e2, &[tp("a", 0)]),
        Err(TxnError::InvalidProducerIdMapping)
    );
}

#[test]
fn an_expired_transaction_is_aborted_and_its_producer_fenced() {
    let mut c = TxnCoordinator::new(900_000);
    let (pid, e0) = c.init_producer_id(0, "tx", 1_000, 7).unwrap();
    c.add_partitions(100, "tx", pid, e0, &[tp("a", 0)]).unwrap();
    c.take_effects();
    c.tick(1_050);
    assert!(c.take_effects().is_empty());
    c.tick(1_100);
    let effects = c.take_effects();
    assert_eq!(markers(&effects), vec![(false, vec![tp("a", 0)])]);
    assert_eq!(
        c.end(1_200, "tx", pid, e0, true),
        Err(TxnError::ProducerFenced)
    );
}

#[test]
fn timeouts_are_bounded_and_a_reload_resumes_unfinished_ends() {
    let mut c = TxnCoordinator::new(900_000);
    assert_eq!(
        c.init_producer_id(0, "tx", 1_000_000, 7),
        Err(TxnError::InvalidTransactionTimeout)
    );
    let (pid, e) = c.init_producer_id(0, "tx", 60_000, 7).unwrap();
    c.add_partitions(1, "tx", pid, e, &[tp("a", 0)]).unwrap();
    c.end(2, "tx", pid, e, false).unwrap();
    let stored: Vec<TxnRecord> = c
        .take_effects()
        .into_iter()
        .filter_map(|e| match e {
            TxnEffect::Persist(r) => Some(r),
            _ => None,
        })
        .collect();
    let mut reloaded = TxnCoordinator::new(900_000);
    for r in stored {
        reloaded.load(10, r);
    }
    assert_eq!(reloaded.get("tx").unwrap().state, TxnState::PrepareAbort);
    reloaded.resume();
    assert_eq!(
        markers(&reloaded.take_effects()),
        vec![(false, vec![tp("a", 0)])]
    );
}

fn writers(effects: &[TxnEffect]) -> Vec<u64> {
    effects
        .iter()
        .filter_map(|e| match e {
            TxnEffect::WriteMarkers { writer, .. } => Some(*writer),
            _ => None,
        })
        .collect()
}

/// Seed 7001317 of the single-node swarm: a timed-out transaction's abort was asked
/// for twice in one tick (the timeout, then the retry of unfinished ends); the
/// second writer finished after the producer's next transaction had begun, and its
/// abort marker decided that transaction's first batches (KIP-98: a transaction's
/// markers come before the next one's batches).
#[test]
fn a_transaction_has_one_marker_writer_and_a_late_one_completes_nothing() {
    let mut c = TxnCoordinator::new(900_000);
    let (pid, e0) = c.init_producer_id(0, "tx", 1_000, 7).unwrap();
    c.add_partitions(100, "tx", pid, e0, &[tp("a", 0)]).unwrap();
    c.take_effects();
    c.tick(1_100);
    c.resume();
    let first = writers(&c.take_effects());
    assert_eq!(first.len(), 1, "the retry does not start a second writer");
    c.resume();
    assert!(writers(&c.take_effects()).is_empty());

    // A failed writer is replaced by the retry; the failed one's end is ignored.
    assert!(c.markers_failed("tx", first[0]));
    c.resume();
    let second = writers(&c.take_effects());
    assert_eq!(second.len(), 1);
    assert!(
        !c.markers_written(1_200, "tx", first[0]),
        "no longer current"
    );
    assert_eq!(c.get("tx").unwrap().state, TxnState::PrepareAbort);
    assert!(c.markers_written(1_200, "tx", second[0]));
    assert_eq!(c.get("tx").unwrap().state, TxnState::CompleteAbort);

    // The next transaction, at the next epoch, is not decided by a late writer.
    let (_, e1) = c.init_producer_id(1_300, "tx", 1_000, 8).unwrap();
    c.add_partitions(1_400, "tx", pid, e1, &[tp("a", 0)])
        .unwrap();
    assert!(!c.markers_written(1_500, "tx", second[0]));
    assert_eq!(c.get("tx").unwrap().state, TxnState::Ongoing);
}

#[test]
fn a_writer_at_work_before_a_reload_is_not_doubled_by_it() {
    let mut c = TxnCoordinator::new(900_000);
    let (pid, e) = c.init_producer_id(0, "tx", 60_000, 7).unwrap();
    c.add_partitions(1, "tx", pid, e, &[tp("a", 0)]).unwrap();
    c.end(2, "tx", pid, e, true).unwrap();
    let effects = c.take_effects();
    let old = writers(&effects);
    let stored: Vec<TxnRecord> = effects
        .into_iter()
        .filter_map(|e| match e {
            TxnEffect::Persist(r) => Some(r),
            _ => None,
        })
        .collect();
    // The partition moves away and back while the writer is still at work.
    c.unload(|_| true);
    for r in stored {
        c.load(10, r);
    }
    c.resume();
    assert!(writers(&c.take_effects()).is_empty());
    assert!(c.markers_written(20, "tx", old[0]));
    assert_eq!(c.get("tx").unwrap().state, TxnState::CompleteCommit);
}
