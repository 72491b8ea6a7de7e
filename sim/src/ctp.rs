//! The consume-transform-produce job (exactly-once): one transactional worker reads
//! the workload topic from its group's committed offsets, writes `out:<value>` for
//! each record to the transactional topic, and commits the input offsets in the same
//! transaction (AddOffsetsToTxn, TxnOffsetCommit). It crashes now and then (a new
//! incarnation fences the old one) and aborts one transaction in ten on purpose; each
//! input must still yield exactly one committed output.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use jepsen_checks::{Kind, Op, F};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::txn_offset_commit_request::{
    TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, GroupId, OffsetFetchRequest, ProducerId, TopicName, TransactionalId,
    TxnOffsetCommitRequest,
};
use kafka_protocol::protocol::StrBytes;
use madsim::rand::{thread_rng, Rng};
use sluice_net::client::{decode_batches, fetch_request, Client};
use tokio::time::{sleep, timeout};

use crate::run::{connected, Recorder, REQUEST_TIMEOUT, TOPIC};
use crate::txn::{end, init, write, Session, Trouble};

pub const CTP_GROUP: &str = "ctp-group";
const CTP_TXN_ID: &str = "ctp-0";

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// The group's committed offsets of the input partitions (0 where none), recorded.
pub(crate) async fn committed(
    rec: &Recorder,
    c: &mut Client,
    node: &str,
    process: u64,
    partitions: i32,
    final_read: bool,
) -> Result<BTreeMap<i32, i64>, ()> {
    let req = OffsetFetchRequest::default()
        .with_group_id(GroupId(s(CTP_GROUP)))
        .with_topics(Some(vec![OffsetFetchRequestTopic::default()
            .with_name(TopicName(s(TOPIC)))
            .with_partition_indexes((0..partitions).collect())]));
    let r = match timeout(REQUEST_TIMEOUT, c.call(req, 5)).await {
        Ok(Ok(r)) if r.error_code == 0 => r,
        _ => return Err(()),
    };
    let mut out = BTreeMap::new();
    for p in r.topics.iter().flat_map(|t| &t.partitions) {
        if p.error_code != 0 {
            return Err(());
        }
        let mut op = Op::new(Kind::Ok, F::FetchOffset, node, process, p.partition_index);
        op.group = Some(CTP_GROUP.into());
        op.offset = Some(p.committed_offset);
        op.final_read = final_read;
        rec.record(op);
        out.insert(p.partition_index, p.committed_offset.max(0));
    }
    Ok(out)
}

pub(crate) async fn worker(
    rec: Recorder,
    input_partitions: i32,
    output_partitions: i32,
    stop: Arc<AtomicBool>,
) {
    let node = "ctp-worker";
    let mut incarnation = 0u64;
    while !stop.load(Ordering::SeqCst) {
        incarnation += 1;
        let process = 3000 + incarnation;
        let lifetime = Duration::from_millis(thread_rng().gen_range(3_000..30_000));
        tokio::select! {
            biased;
            () = life(&rec, node, process, input_partitions, output_partitions, &stop) => return,
            () = sleep(lifetime) => {
                rec.trace(&format!("{node}: crashed (process {process})"));
                sleep(Duration::from_millis(thread_rng().gen_range(0..2_000))).await;
            }
        }
    }
}

/// One incarnation: sessions until `stop`.
async fn life(
    rec: &Recorder,
    node: &str,
    process: u64,
    input_partitions: i32,
    output_partitions: i32,
    stop: &AtomicBool,
) {
    let mut client: Option<Client> = None;
    let mut n = 0;
    while !stop.load(Ordering::SeqCst) {
        let Some(c) = connected(&mut client, node).await else {
            continue;
        };
        let mut sess = match init(c, CTP_TXN_ID).await {
            Ok(Some(s)) => s,
            Ok(None) => {
                sleep(Duration::from_millis(100)).await;
                continue;
            }
            Err(()) => {
                client = None;
                continue;
            }
        };
        // A session: from the committed offsets, transactions until trouble.
        let Ok(mut positions) = committed(rec, c, node, process, input_partitions, false).await
        else {
            client = None;
            continue;
        };
        loop {
            if stop.load(Ordering::SeqCst) {
                return;
            }
            let outcome = one_transaction(
                rec,
                c,
                node,
                process,
                &mut sess,
                &mut positions,
                output_partitions,
                &mut n,
            )
            .await;
            match outcome {
                Ok(()) => {}
                Err(Trouble::Fenced) => break,
                Err(Trouble::Lost) => {
                    client = None;
                    break;
                }
            }
        }
    }
}

/// Reads a few input records, writes their outputs and commits the input offsets in
/// one transaction. On any doubt the session ends (the next one re-reads the
/// committed offsets).
#[allow(clippy::too_many_arguments)]
async fn one_transaction(
    rec: &Recorder,
    c: &mut Client,
    node: &str,
    process: u64,
    sess: &mut Session,
    positions: &mut BTreeMap<i32, i64>,
    output_partitions: i32,
    n: &mut u64,
) -> Result<(), Trouble> {
    let req = fetch_request(
        TOPIC,
        positions.iter().map(|(&p, &o)| (p, o)),
        100,
        16 << 10,
        4 << 10,
    );
    let r = match timeout(REQUEST_TIMEOUT, c.call(req, 12)).await {
        Ok(Ok(r)) => r,
        _ => return Err(Trouble::Lost),
    };
    let mut next = positions.clone();
    let mut outputs: Vec<(i64, String)> = Vec::new();
    // Output values name their input and this attempt, so an aborted attempt's
    // writes never look like a later committed one's.
    let attempt = format!("{process}-{n}");
    for pd in r.responses.into_iter().flat_map(|t| t.partitions) {
        if pd.error_code != 0 {
            return Err(Trouble::Lost);
        }
        let from = positions.get(&pd.partition_index).copied().unwrap_or(0);
        let records =
            decode_batches(pd.records.unwrap_or_default(), from).map_err(|_| Trouble::Lost)?;
        for r in records.into_iter().take(20) {
            let v = String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned();
            let key = v.split(':').next().unwrap_or_default().to_string();
            let out_partition = i64::from(r.offset as i32 % output_partitions);
            outputs.push((out_partition, format!("out:{key}@{attempt}")));
            next.insert(pd.partition_index, r.offset + 1);
        }
    }
    if outputs.is_empty() {
        sleep(Duration::from_millis(50)).await;
        return Ok(());
    }
    write(c, CTP_TXN_ID, sess, &outputs).await?;
    // The input offsets, in the same transaction.
    let add = AddOffsetsToTxnRequest::default()
        .with_transactional_id(TransactionalId(s(CTP_TXN_ID)))
        .with_producer_id(ProducerId(sess.producer_id))
        .with_producer_epoch(sess.epoch)
        .with_group_id(GroupId(s(CTP_GROUP)));
    match timeout(REQUEST_TIMEOUT, c.call(add, 3)).await {
        Ok(Ok(r)) if r.error_code == 0 => {}
        Ok(Ok(r)) if matches!(r.error_code, 47 | 49 | 90) => return Err(Trouble::Fenced),
        _ => return Err(Trouble::Lost),
    }
    let commit = TxnOffsetCommitRequest::default()
        .with_transactional_id(TransactionalId(s(CTP_TXN_ID)))
        .with_group_id(GroupId(s(CTP_GROUP)))
        .with_producer_id(ProducerId(sess.producer_id))
        .with_producer_epoch(sess.epoch)
        .with_generation_id(-1)
        .with_topics(vec![TxnOffsetCommitRequestTopic::default()
            .with_name(TopicName(s(TOPIC)))
            .with_partitions(
                next.iter()
                    .map(|(&p, &o)| {
                        TxnOffsetCommitRequestPartition::default()
                            .with_partition_index(p)
                            .with_committed_offset(o)
                    })
                    .collect(),
            )]);
    match timeout(REQUEST_TIMEOUT, c.call(commit, 3)).await {
        Ok(Ok(r))
            if r.topics
                .iter()
                .flat_map(|t| &t.partitions)
                .all(|p| p.error_code == 0) => {}
        Ok(Ok(_)) => return Err(Trouble::Fenced),
        _ => return Err(Trouble::Lost),
    }
    let to_commit = thread_rng().gen_bool(0.9);
    *n += 1;
    let mut op = Op::new(Kind::Invoke, F::Txn, node, process, -1);
    op.txn = Some(format!("ctp-{process}-{n}"));
    op.records = outputs;
    op.commit = Some(to_commit);
    rec.record(op.clone());
    match end(c, CTP_TXN_ID, sess, to_commit).await {
        Ok(()) => {
            op.kind = Kind::Ok;
            rec.record(op);
            if to_commit {
                *positions = next;
                Ok(())
            } else {
                // Aborted on purpose: the same input again from the committed offsets.
                Err(Trouble::Fenced)
            }
        }
        Err(why) => {
            op.kind = Kind::Info;
            op.error = Some(why);
            rec.record(op);
            Err(Trouble::Lost)
        }
    }
}
