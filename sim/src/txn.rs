//! The transactional workload: producers that write one record to each of a few
//! partitions of their own topic in a transaction and then commit (mostly) or abort,
//! through faults; and a read_committed reader. A transaction whose end has no
//! definite answer is recorded as unknown; its producer then starts again with
//! InitProducerId, which fences its old epoch and settles the transaction.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use jepsen_checks::{Kind, Op, F};
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::{
    AddPartitionsToTxnRequest, EndTxnRequest, InitProducerIdRequest, ProducerId, TopicName,
    TransactionalId,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::Compression;
use madsim::rand::{thread_rng, Rng};
use sluice_net::client::{
    decode_committed, encode_transactional_batch, produce_request, Client, Message, Sequence,
};
use tokio::time::{sleep, timeout, Instant};

use crate::run::{connected, fetch_partition, Recorder, REQUEST_TIMEOUT};

pub const TXN_TOPIC: &str = "jepsen-txn";
/// Short, so that the coordinator's timeout aborts happen within a run.
const TXN_TIMEOUT_MS: i32 = 3_000;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// A producer's identity for its transactional id, and its sequences per partition.
pub(crate) struct Session {
    pub producer_id: i64,
    pub epoch: i16,
    next: BTreeMap<i32, i32>,
}

/// Why a transaction could not go on.
pub(crate) enum Trouble {
    /// The connection or broker failed: reconnect.
    Lost,
    /// The producer's epoch is no longer current: start a new session.
    Fenced,
}

pub(crate) async fn producer(
    rec: Recorder,
    index: u64,
    partitions: i32,
    transactions: usize,
    stop: Arc<AtomicBool>,
) {
    let node = format!("txn-producer-{index}");
    let process = 2000 + index;
    let txn_id = format!("txp-{index}");
    let mut client: Option<Client> = None;
    let mut session: Option<Session> = None;
    let mut n = 0;
    while n < transactions && !stop.load(Ordering::SeqCst) {
        let Some(c) = connected(&mut client, &node).await else {
            continue;
        };
        if session.is_none() {
            match init(c, &txn_id).await {
                Ok(Some(s)) => session = Some(s),
                Ok(None) => {
                    // CONCURRENT_TRANSACTIONS: the previous epoch is being settled.
                    sleep(Duration::from_millis(100)).await;
                    continue;
                }
                Err(()) => {
                    client = None;
                    continue;
                }
            }
        }
        let Some(sess) = session.as_mut() else {
            continue;
        };
        let name = format!("tx{index}-{n}");
        n += 1;
        let count = thread_rng().gen_range(1..=partitions);
        let mut chosen: Vec<i32> = (0..partitions).collect();
        while chosen.len() > count as usize {
            let drop = thread_rng().gen_range(0..chosen.len());
            chosen.remove(drop);
        }
        let writes: Vec<(i64, String)> = chosen
            .iter()
            .map(|&p| (i64::from(p), format!("{name}-p{p}")))
            .collect();
        let written = write(c, &txn_id, sess, &writes).await;
        let commit = written.is_ok() && thread_rng().gen_bool(0.8);
        if let Err(Trouble::Fenced) = written {
            session = None;
            continue;
        }
        let mut op = Op::new(Kind::Invoke, F::Txn, &node, process, -1);
        op.txn = Some(name.clone());
        op.records = writes.clone();
        op.commit = Some(commit);
        rec.record(op.clone());
        let ended = end(c, &txn_id, sess, commit).await;
        match ended {
            Ok(()) => op.kind = Kind::Ok,
            Err(why) => {
                op.kind = Kind::Info;
                op.error = Some(why);
                // Whatever happened, a new session settles it.
                session = None;
                client = None;
            }
        }
        rec.record(op);
        if written.is_err() {
            // A write whose outcome is unknown may be in the log under its sequence
            // number, which the next batch would reuse: a new epoch restarts the
            // sequences, as Kafka clients do after an abortable error.
            session = None;
        }
        sleep(Duration::from_millis(thread_rng().gen_range(0..50))).await;
    }
}

pub(crate) async fn init(c: &mut Client, txn_id: &str) -> Result<Option<Session>, ()> {
    let req = InitProducerIdRequest::default()
        .with_transactional_id(Some(TransactionalId(s(txn_id))))
        .with_transaction_timeout_ms(TXN_TIMEOUT_MS);
    match timeout(REQUEST_TIMEOUT, c.call(req, 4)).await {
        Ok(Ok(r)) if r.error_code == 0 => Ok(Some(Session {
            producer_id: r.producer_id.0,
            epoch: r.producer_epoch,
            next: BTreeMap::new(),
        })),
        Ok(Ok(r)) if r.error_code == 51 || r.error_code == 15 => Ok(None),
        _ => Err(()),
    }
}

/// Adds the partitions and writes one record to each.
pub(crate) async fn write(
    c: &mut Client,
    txn_id: &str,
    sess: &mut Session,
    writes: &[(i64, String)],
) -> Result<(), Trouble> {
    let partitions: Vec<i32> = writes.iter().map(|(p, _)| *p as i32).collect();
    let add = AddPartitionsToTxnRequest::default()
        .with_v3_and_below_transactional_id(TransactionalId(s(txn_id)))
        .with_v3_and_below_producer_id(ProducerId(sess.producer_id))
        .with_v3_and_below_producer_epoch(sess.epoch)
        .with_v3_and_below_topics(vec![AddPartitionsToTxnTopic::default()
            .with_name(TopicName(s(TXN_TOPIC)))
            .with_partitions(partitions)]);
    let r = match timeout(REQUEST_TIMEOUT, c.call(add, 3)).await {
        Ok(Ok(r)) => r,
        _ => return Err(Trouble::Lost),
    };
    let code = r
        .results_by_topic_v3_and_below
        .iter()
        .flat_map(|t| &t.results_by_partition)
        .map(|p| p.partition_error_code)
        .find(|c| *c != 0);
    match code {
        None => {}
        Some(47 | 49 | 90) => return Err(Trouble::Fenced),
        Some(_) => return Err(Trouble::Lost),
    }
    for (p, value) in writes {
        let p = *p as i32;
        let seq = sess.next.get(&p).copied().unwrap_or(0);
        let batch = encode_transactional_batch(
            &[Message {
                key: None,
                value: Some(Bytes::from(value.clone())),
                timestamp: 0,
            }],
            Compression::None,
            Sequence {
                producer_id: sess.producer_id,
                epoch: sess.epoch,
                first: seq,
            },
        )
        .map_err(|_| Trouble::Lost)?;
        let req = produce_request(TXN_TOPIC, -1, 1000, [(p, batch)]);
        let code = match timeout(REQUEST_TIMEOUT, c.call(req, 9)).await {
            Ok(Ok(r)) => r
                .responses
                .first()
                .and_then(|t| t.partition_responses.first())
                .map_or(-1, |x| x.error_code),
            _ => return Err(Trouble::Lost),
        };
        match code {
            0 => {
                sess.next.insert(p, seq + 1);
            }
            47 | 48 | 90 => return Err(Trouble::Fenced),
            _ => return Err(Trouble::Lost),
        }
    }
    Ok(())
}

/// EndTxn, retried while the coordinator is busy; `Err` when the outcome is unknown.
pub(crate) async fn end(
    c: &mut Client,
    txn_id: &str,
    sess: &Session,
    commit: bool,
) -> Result<(), String> {
    let req = EndTxnRequest::default()
        .with_transactional_id(TransactionalId(s(txn_id)))
        .with_producer_id(ProducerId(sess.producer_id))
        .with_producer_epoch(sess.epoch)
        .with_committed(commit);
    for _ in 0..10 {
        match timeout(REQUEST_TIMEOUT * 2, c.call(req.clone(), 3)).await {
            Ok(Ok(r)) if r.error_code == 0 => return Ok(()),
            Ok(Ok(r)) if r.error_code == 51 => sleep(Duration::from_millis(100)).await,
            Ok(Ok(r)) => return Err(format!("error code {}", r.error_code)),
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) => return Err("timed out".into()),
        }
    }
    Err("still busy".into())
}

/// One read_committed fetch of a partition: records, where the fetched batches end,
/// last stable offset, high watermark.
async fn read_committed(
    c: &mut Client,
    partition: i32,
    offset: i64,
) -> Result<(Vec<(i64, String)>, i64, i64, i64), String> {
    let pd = fetch_partition(c, TXN_TOPIC, partition, offset, true).await?;
    let data = pd.records.clone().unwrap_or_default();
    let end = batches_end(&data);
    let aborted: Vec<(i64, i64)> = pd
        .aborted_transactions
        .unwrap_or_default()
        .iter()
        .map(|a| (a.producer_id.0, a.first_offset))
        .collect();
    let records = decode_committed(data, offset, &aborted)
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|r| {
            let v = String::from_utf8_lossy(r.value.as_deref().unwrap_or_default());
            (r.offset, v.into_owned())
        })
        .collect();
    Ok((
        records,
        end.unwrap_or(offset),
        pd.last_stable_offset,
        pd.high_watermark,
    ))
}

/// The offset after the last whole batch in fetched data.
fn batches_end(data: &[u8]) -> Option<i64> {
    let mut pos = 0;
    let mut end = None;
    while pos + 61 <= data.len() {
        let base = i64::from_be_bytes(data[pos..pos + 8].try_into().ok()?);
        let len = i32::from_be_bytes(data[pos + 8..pos + 12].try_into().ok()?);
        let size = 12 + usize::try_from(len).ok()?;
        if pos + size > data.len() {
            break;
        }
        let delta = i32::from_be_bytes(data[pos + 23..pos + 27].try_into().ok()?);
        end = Some(base + i64::from(delta) + 1);
        pos += size;
    }
    end
}

/// Polls every partition read_committed, from where it got to (the position moves
/// past what was read, or to the last stable offset when the rest was aborted).
pub(crate) async fn reader(
    rec: Recorder,
    partitions: i32,
    stop: Arc<AtomicBool>,
    final_read: bool,
) -> Option<String> {
    let node = if final_read {
        "txn-final-reader"
    } else {
        "txn-reader"
    };
    let process = if final_read { 2998 } else { 2999 };
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut positions = vec![0i64; partitions as usize];
    let mut done = vec![false; partitions as usize];
    let mut client: Option<Client> = None;
    let mut p = 0usize;
    loop {
        if final_read {
            if done.iter().all(|d| *d) {
                return None;
            }
            if Instant::now() > deadline {
                return Some(format!("read_committed final read stuck at {positions:?}"));
            }
        } else if stop.load(Ordering::SeqCst) {
            return None;
        }
        p = (p + 1) % positions.len();
        if final_read && done[p] {
            continue;
        }
        let Some(c) = connected(&mut client, node).await else {
            continue;
        };
        let mut op = Op::new(Kind::Ok, F::ReadCommitted, node, process, p as i32);
        op.from = Some(positions[p]);
        op.final_read = final_read;
        match read_committed(c, p as i32, positions[p]).await {
            Ok((records, end, lso, hw)) => {
                positions[p] = end.max(positions[p]);
                if final_read && positions[p] >= lso && lso == hw {
                    done[p] = true;
                }
                op.records = records;
                op.lso = Some(lso);
                op.hw = Some(hw);
            }
            Err(e) => {
                op.kind = Kind::Fail;
                op.error = Some(e);
                client = None;
            }
        }
        let failed = op.kind == Kind::Fail;
        rec.record(op);
        if failed {
            sleep(Duration::from_millis(100)).await;
        }
    }
}
