//! openraft's storage for the metadata quorum, over the `Disk` seam.
//!
//! In `raft/` under the data directory:
//! - `log`: the entries, each framed as `[len u32][crc32c u32][json]`, appended and
//!   fsynced before openraft hears they are stored. A torn tail is cut at open.
//! - `vote`, `committed`, `purged`: checkpoints (write-temp, fsync, rename, fsync dir).
//! - `snapshot`: the last snapshot (its meta and the metadata image), a checkpoint.
//!
//! Purged entries are dropped from memory at once and from the file when it is
//! rewritten, which happens once the purged prefix outweighs what remains.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io::{self, Cursor};
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage, RaftStateMachine, Snapshot};
use openraft::{
    Entry, EntryPayload, ErrorSubject, ErrorVerb, LogId, OptionalSend, RaftLogReader,
    RaftSnapshotBuilder, SnapshotMeta, StorageError, StoredMembership, Vote,
};
use serde::{Deserialize, Serialize};
use sluice_core::cluster::metadata::MetadataImage;
use sluice_core::cluster::raft::MetadataRaft;
use sluice_core::env::{Disk, DiskFile};
use tokio::sync::watch;

use sluice_core::sim::{planted, Bug};

use crate::checkpoint;

type NodeId = u64;
type Node = openraft::BasicNode;
type Error = StorageError<NodeId>;

const DIR: &str = "raft";
/// Reads of a log whose checksums fail before its tail is declared torn.
const REREADS: usize = 8;
/// The log file is rewritten when its purged prefix is at least this large.
const REWRITE_BYTES: u64 = 1 << 20;

fn path(name: &str) -> PathBuf {
    Path::new(DIR).join(name)
}

fn read_json<T: for<'de> Deserialize<'de>>(disk: &dyn Disk, name: &str) -> io::Result<Option<T>> {
    match checkpoint::read(disk, &path(name))? {
        None => Ok(None),
        Some(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("raft/{name}: {e}"))),
    }
}

fn write_json<T: Serialize>(disk: &dyn Disk, name: &str, value: &T) -> io::Result<()> {
    let bytes = serde_json::to_vec(value).map_err(io::Error::other)?;
    checkpoint::write_atomic(disk, &path(name), &bytes)
}

fn frame(entry: &Entry<MetadataRaft>) -> io::Result<Vec<u8>> {
    let json = serde_json::to_vec(entry).map_err(io::Error::other)?;
    let mut out = Vec::with_capacity(json.len() + 8);
    out.extend_from_slice(&(json.len() as u32).to_be_bytes());
    out.extend_from_slice(&crc32c::crc32c(&json).to_be_bytes());
    out.extend_from_slice(&json);
    Ok(out)
}

/// The stored log's entries as (index, leader id and payload as text), and the
/// snapshot's last index.
pub type Described = (Vec<(u64, String)>, Option<u64>);

/// For the simulator's diagnostics: what the metadata log holds on a disk.
pub fn describe(disk: &dyn Disk) -> io::Result<Described> {
    let file = disk.open(&path("log"), false)?;
    let mut bytes = vec![0u8; file.size()? as usize];
    file.read_exact_at(0, &mut bytes)?;
    let entries = parse(&bytes)
        .0
        .into_iter()
        .map(|(_, e)| {
            (
                e.log_id.index,
                format!("{} {:?}", e.log_id.leader_id, e.payload),
            )
        })
        .collect();
    let snapshot: Option<StoredSnapshot> = read_json(disk, "snapshot")?;
    Ok((
        entries,
        snapshot.and_then(|s| s.meta.last_log_id.map(|l| l.index)),
    ))
}

/// For the simulator's diagnostics: the metadata image the stored log gives when
/// replayed from the start.
pub fn replay(disk: &dyn Disk) -> io::Result<sluice_core::cluster::metadata::MetadataImage> {
    let file = disk.open(&path("log"), false)?;
    let mut bytes = vec![0u8; file.size()? as usize];
    file.read_exact_at(0, &mut bytes)?;
    let mut image = sluice_core::cluster::metadata::MetadataImage::default();
    for (_, e) in parse(&bytes).0 {
        if let EntryPayload::Normal(command) = e.payload {
            // A refused command changes nothing, as when it was first applied.
            let _ = image.apply(&command);
        }
    }
    Ok(image)
}

/// Parses framed entries; returns them with their file offsets and the length of the
/// valid prefix.
fn parse(bytes: &[u8]) -> (Vec<(u64, Entry<MetadataRaft>)>, u64) {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while let Some(head) = bytes.get(pos..pos + 8) {
        let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let crc = u32::from_be_bytes([head[4], head[5], head[6], head[7]]);
        let Some(json) = bytes.get(pos + 8..pos + 8 + len) else {
            break;
        };
        if crc32c::crc32c(json) != crc {
            break;
        }
        let Ok(entry) = serde_json::from_slice(json) else {
            break;
        };
        out.push((pos as u64, entry));
        pos += 8 + len;
    }
    (out, pos as u64)
}

struct LogInner {
    disk: Arc<dyn Disk>,
    file: Arc<dyn DiskFile>,
    /// Entries by index, with their offset in the file.
    entries: BTreeMap<u64, (u64, Entry<MetadataRaft>)>,
    /// Bytes of valid entries in the file.
    end: u64,
    last_purged: Option<LogId<NodeId>>,
    vote: Option<Vote<NodeId>>,
    committed: Option<LogId<NodeId>>,
}

/// The raft log store; clones share the log.
#[derive(Clone)]
pub struct RaftLogStore {
    inner: Arc<Mutex<LogInner>>,
}

fn io_err(e: io::Error) -> Error {
    storage_err(ErrorSubject::Logs, ErrorVerb::Write, e)
}

fn storage_err(subject: ErrorSubject<NodeId>, verb: ErrorVerb, e: impl ToString) -> Error {
    let e = e.to_string();
    sluice_core::sim_event!("metadata store error: {verb:?} {subject:?}: {e}");
    StorageError::from_io_error(subject, verb, io::Error::other(e))
}

impl RaftLogStore {
    /// Opens (or creates) the log under `raft/`, cutting a torn tail.
    pub fn open(disk: Arc<dyn Disk>) -> io::Result<RaftLogStore> {
        disk.create_dir_all(Path::new(DIR))?;
        let file = disk.open(&path("log"), true)?;
        let size = file.size()?;
        let mut parsed = (Vec::new(), 0);
        for _ in 0..REREADS {
            let mut bytes = vec![0u8; size as usize];
            file.read_exact_at(0, &mut bytes)?;
            parsed = parse(&bytes);
            if parsed.1 == size {
                break;
            }
        }
        let (entries, end) = parsed;
        if end < size {
            tracing::warn!(valid = end, size, "raft log: cutting a torn tail");
            file.set_len(end)?;
        }
        // After a process kill (not a power loss) the page cache still holds what was
        // written, synced or not: entries whose fsync failed, a checkpoint renamed
        // into place without its directory sync. openraft is about to take all of it
        // as stored and tell the leader so; it must be durable first, or a power loss
        // later takes back entries counted in a commit (a node's log then differs
        // from the quorum's at an index it acknowledged).
        if !planted(Bug::RaftStoreTrustsPageCache) {
            file.sync()?;
            disk.sync_dir(Path::new(DIR))?;
        }
        let last_purged: Option<LogId<NodeId>> = read_json(disk.as_ref(), "purged")?;
        let floor = last_purged.map_or(0, |l| l.index + 1);
        let entries = entries
            .into_iter()
            .filter(|(_, e)| e.log_id.index >= floor)
            .map(|(off, e)| (e.log_id.index, (off, e)))
            .collect();
        Ok(RaftLogStore {
            inner: Arc::new(Mutex::new(LogInner {
                vote: read_json(disk.as_ref(), "vote")?,
                committed: read_json(disk.as_ref(), "committed")?,
                disk,
                file,
                entries,
                end,
                last_purged,
            })),
        })
    }

    fn lock(&self) -> MutexGuard<'_, LogInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends entries and makes them durable (what openraft's `append` does before
    /// it reports them stored).
    pub fn append_entries(
        &self,
        entries: impl IntoIterator<Item = Entry<MetadataRaft>>,
    ) -> io::Result<()> {
        let mut inner = self.lock();
        let mut buf = Vec::new();
        let mut added = Vec::new();
        for entry in entries {
            let off = inner.end + buf.len() as u64;
            buf.extend_from_slice(&frame(&entry)?);
            added.push((off, entry));
        }
        inner.file.write_at(inner.end, &buf)?;
        inner.file.sync()?;
        inner.end += buf.len() as u64;
        for (off, entry) in added {
            inner.entries.insert(entry.log_id.index, (off, entry));
        }
        Ok(())
    }

    /// The indexes of the entries held.
    pub fn indexes(&self) -> Vec<u64> {
        self.lock().entries.keys().copied().collect()
    }

    /// The index of the last entry known committed (0 for none).
    pub fn committed_index(&self) -> u64 {
        self.lock().committed.map_or(0, |l| l.index)
    }
}

impl LogInner {
    /// Rewrites the file with only the entries still held.
    fn rewrite(&mut self) -> io::Result<()> {
        let tmp = path("log.tmp");
        let file = self.disk.open(&tmp, true)?;
        file.set_len(0)?;
        let mut pos = 0u64;
        for (off, entry) in self.entries.values_mut() {
            let framed = frame(entry)?;
            file.write_at(pos, &framed)?;
            *off = pos;
            pos += framed.len() as u64;
        }
        file.sync()?;
        self.disk.rename(&tmp, &path("log"))?;
        self.disk.sync_dir(Path::new(DIR))?;
        self.file = file;
        self.end = pos;
        Ok(())
    }
}

impl RaftLogReader<MetadataRaft> for RaftLogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<MetadataRaft>>, Error> {
        Ok(self
            .lock()
            .entries
            .range(range)
            .map(|(_, (_, e))| e.clone())
            .collect())
    }
}

impl RaftLogStorage<MetadataRaft> for RaftLogStore {
    type LogReader = RaftLogStore;

    async fn get_log_state(&mut self) -> Result<LogState<MetadataRaft>, Error> {
        let inner = self.lock();
        let last = inner
            .entries
            .values()
            .next_back()
            .map(|(_, e)| e.log_id)
            .or(inner.last_purged);
        Ok(LogState {
            last_purged_log_id: inner.last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), Error> {
        let mut inner = self.lock();
        write_json(inner.disk.as_ref(), "vote", vote)
            .map_err(|e| storage_err(ErrorSubject::Vote, ErrorVerb::Write, e))?;
        inner.vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, Error> {
        Ok(self.lock().vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> Result<(), Error> {
        let mut inner = self.lock();
        if inner.committed != committed {
            write_json(inner.disk.as_ref(), "committed", &committed).map_err(io_err)?;
            inner.committed = committed;
        }
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, Error> {
        Ok(self.lock().committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<MetadataRaft>,
    ) -> Result<(), Error>
    where
        I: IntoIterator<Item = Entry<MetadataRaft>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let result = self.append_entries(entries);
        match result {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(io::Error::new(e.kind(), e.to_string())));
                Err(io_err(e))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), Error> {
        let mut inner = self.lock();
        let Some((off, _)) = inner
            .entries
            .get(&log_id.index)
            .map(|(o, e)| (*o, e.log_id))
        else {
            return Ok(());
        };
        inner.file.set_len(off).map_err(io_err)?;
        inner.file.sync().map_err(io_err)?;
        inner.end = off;
        inner.entries.split_off(&log_id.index);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), Error> {
        let mut inner = self.lock();
        write_json(inner.disk.as_ref(), "purged", &log_id).map_err(io_err)?;
        inner.last_purged = Some(log_id);
        inner.entries = inner.entries.split_off(&(log_id.index + 1));
        let kept = inner.entries.values().next().map_or(inner.end, |(o, _)| *o);
        if kept >= REWRITE_BYTES && kept * 2 >= inner.end {
            inner.rewrite().map_err(io_err)?;
        }
        Ok(())
    }
}

/// The stored snapshot: its meta and the image it captured.
#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, Node>,
    image: MetadataImage,
}

/// What the state machine publishes after each apply.
#[derive(Debug, Clone, Default)]
pub struct Applied {
    pub image: Arc<MetadataImage>,
    /// The index of the last applied entry (0 before any).
    pub index: u64,
}

struct MachineInner {
    disk: Arc<dyn Disk>,
    image: MetadataImage,
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, Node>,
    snapshot: Option<StoredSnapshot>,
    published: watch::Sender<Applied>,
}

/// The state machine: the metadata image, rebuilt from the snapshot and the log.
#[derive(Clone)]
pub struct MetadataMachine {
    inner: Arc<Mutex<MachineInner>>,
}

impl MetadataMachine {
    /// Opens the state machine at its last snapshot; the log is replayed by openraft.
    pub fn open(disk: Arc<dyn Disk>) -> io::Result<(MetadataMachine, watch::Receiver<Applied>)> {
        let snapshot: Option<StoredSnapshot> = read_json(disk.as_ref(), "snapshot")?;
        let (image, last_applied, membership) = match &snapshot {
            Some(s) => (
                s.image.clone(),
                s.meta.last_log_id,
                s.meta.last_membership.clone(),
            ),
            None => Default::default(),
        };
        let (published, rx) = watch::channel(Applied {
            image: Arc::new(image.clone()),
            index: last_applied.map_or(0, |l| l.index),
        });
        Ok((
            MetadataMachine {
                inner: Arc::new(Mutex::new(MachineInner {
                    disk,
                    image,
                    last_applied,
                    membership,
                    snapshot,
                    published,
                })),
            },
            rx,
        ))
    }

    fn lock(&self) -> MutexGuard<'_, MachineInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl MachineInner {
    fn publish(&self) {
        self.published.send_replace(Applied {
            image: Arc::new(self.image.clone()),
            index: self.last_applied.map_or(0, |l| l.index),
        });
    }
}

impl RaftSnapshotBuilder<MetadataRaft> for MetadataMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<MetadataRaft>, Error> {
        let mut inner = self.lock();
        let last = inner.last_applied;
        let meta = SnapshotMeta {
            last_log_id: last,
            last_membership: inner.membership.clone(),
            snapshot_id: last.map_or("0-0".into(), |l| format!("{}-{}", l.leader_id, l.index)),
        };
        let stored = StoredSnapshot {
            meta: meta.clone(),
            image: inner.image.clone(),
        };
        let bytes = serde_json::to_vec(&stored.image)
            .map_err(|e| storage_err(ErrorSubject::Snapshot(None), ErrorVerb::Write, e))?;
        write_json(inner.disk.as_ref(), "snapshot", &stored)
            .map_err(|e| storage_err(ErrorSubject::Snapshot(None), ErrorVerb::Write, e))?;
        inner.snapshot = Some(stored);
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        })
    }
}

impl RaftStateMachine<MetadataRaft> for MetadataMachine {
    type SnapshotBuilder = MetadataMachine;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, Node>), Error> {
        let inner = self.lock();
        Ok((inner.last_applied, inner.membership.clone()))
    }

    async fn apply<I>(
        &mut self,
        entries: I,
    ) -> Result<Vec<<MetadataRaft as openraft::RaftTypeConfig>::R>, Error>
    where
        I: IntoIterator<Item = Entry<MetadataRaft>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut inner = self.lock();
        let mut out = Vec::new();
        for entry in entries {
            inner.last_applied = Some(entry.log_id);
            match entry.payload {
                EntryPayload::Blank => out.push(Ok(sluice_core::cluster::metadata::Applied::Done)),
                EntryPayload::Normal(command) => out.push(inner.image.apply(&command)),
                EntryPayload::Membership(m) => {
                    inner.membership = StoredMembership::new(Some(entry.log_id), m);
                    out.push(Ok(sluice_core::cluster::metadata::Applied::Done));
                }
            }
        }
        inner.publish();
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, Error> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, Node>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), Error> {
        let image: MetadataImage = serde_json::from_slice(snapshot.get_ref()).map_err(|e| {
            storage_err(
                ErrorSubject::Snapshot(Some(meta.signature())),
                ErrorVerb::Read,
                e,
            )
        })?;
        let mut inner = self.lock();
        let stored = StoredSnapshot {
            meta: meta.clone(),
            image: image.clone(),
        };
        write_json(inner.disk.as_ref(), "snapshot", &stored).map_err(|e| {
            storage_err(
                ErrorSubject::Snapshot(Some(meta.signature())),
                ErrorVerb::Write,
                e,
            )
        })?;
        inner.image = image;
        inner.last_applied = meta.last_log_id;
        inner.membership = meta.last_membership.clone();
        inner.snapshot = Some(stored);
        inner.publish();
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<MetadataRaft>>, Error> {
        let inner = self.lock();
        let Some(s) = &inner.snapshot else {
            return Ok(None);
        };
        let bytes = serde_json::to_vec(&s.image)
            .map_err(|e| storage_err(ErrorSubject::Snapshot(None), ErrorVerb::Read, e))?;
        Ok(Some(Snapshot {
            meta: s.meta.clone(),
            snapshot: Box::new(Cursor::new(bytes)),
        }))
    }
}
