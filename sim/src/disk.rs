//! A simulated [`Disk`] with a real fault model. madsim's own fs has none, so this
//! one keeps, per file, the bytes a crash would keep apart from the bytes written
//! since the last sync, and per directory the entries a crash would keep apart from
//! those created, renamed or removed since the last directory sync.
//!
//! On [`SimDisk::crash`]: each file keeps its synced bytes plus, for an appended
//! unsynced tail, a random whole number of 512-byte sectors, any of which may be torn
//! (garbage: sectors reach the medium out of order), the last most often; each directory entry changed since its directory's sync is kept or
//! reverted at random. Directories themselves are created durably (a simplification:
//! the broker syncs the parent after creating one anyway).
//!
//! Faults that can be switched on: fsync failure, corrupted reads, a full disk.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use sluice_core::env::{splitmix64, Disk, DiskFile};

pub const SECTOR: usize = 512;

#[derive(Default)]
struct FileState {
    data: Vec<u8>,
    /// What survives a crash.
    durable: Vec<u8>,
    /// Lowest offset changed since the last sync.
    dirty_from: Option<usize>,
    /// Alive while a handle is open: as on Linux, a file removed from its directory
    /// stays readable through handles opened before.
    opened: std::sync::Weak<()>,
}

#[derive(Default, Clone)]
struct Dir {
    entries: BTreeMap<String, u64>,
    durable: BTreeMap<String, u64>,
}

/// Switchable faults.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Every fsync fails from now on.
    pub fail_sync: bool,
    /// Per mille of reads that return one flipped bit.
    pub corrupt_read_per_mille: u64,
    /// Bytes the disk holds in all; writes beyond fail with "no space".
    pub capacity_bytes: Option<u64>,
    /// Power fails as the disk is asked for its Nth sync (of a file or a directory)
    /// from now, before that sync takes effect: a crash at each durability step.
    pub crash_at_sync: Option<u64>,
}

/// What the disk did, for the run's report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiskStats {
    pub syncs: u64,
    pub failed_syncs: u64,
    pub corrupted_reads: u64,
    pub full_disk_writes: u64,
    pub crashes: u64,
    pub torn_sectors: u64,
    pub lost_bytes: u64,
    pub reverted_entries: u64,
}

struct Inner {
    files: BTreeMap<u64, FileState>,
    dirs: BTreeMap<PathBuf, Dir>,
    next_id: u64,
    /// Bumped by every crash: handles from before it are dead.
    generation: u64,
    rng: u64,
    faults: Faults,
    stats: DiskStats,
}

impl Inner {
    /// Counts a sync against `Faults::crash_at_sync`; at zero the power fails.
    fn power_fails_at_sync(&mut self) -> io::Result<()> {
        match self.faults.crash_at_sync {
            Some(0) => Err(io::Error::other("the power is off")),
            Some(1) => {
                self.faults.crash_at_sync = Some(0);
                self.crash();
                Err(io::Error::other("power failed"))
            }
            Some(n) => {
                self.faults.crash_at_sync = Some(n - 1);
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Power loss (see [`SimDisk::crash`]).
    fn crash(&mut self) {
        let d = self;
        d.generation += 1;
        d.stats.crashes += 1;
        let ids: Vec<u64> = d.files.keys().copied().collect();
        for id in ids {
            let r1 = d.next_random();
            let r2 = d.next_random();
            let mut torn = 0;
            let Some(f) = d.files.get_mut(&id) else {
                continue;
            };
            let mut survived = f.durable.clone();
            let appended_only = f.data.len() > f.durable.len() && f.data.starts_with(&f.durable);
            if appended_only {
                // Whole sectors (aligned in the file, so a sector may hold both synced
                // and unsynced bytes) of the unsynced tail reached the medium, a prefix
                // of them, not necessarily in order: any may be torn (garbage where the
                // unsynced bytes were), the last most often.
                let (start, end) = (f.durable.len(), f.data.len());
                let first = start / SECTOR;
                let sectors = (end - 1) / SECTOR - first + 1;
                let keep = (r1 % (sectors as u64 + 1)) as usize;
                let kept_end = if keep == 0 {
                    start
                } else {
                    end.min((first + keep) * SECTOR)
                };
                survived.extend_from_slice(&f.data[start..kept_end]);
                let mut x = r2;
                for s in first..first + keep {
                    x = x
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let last = s + 1 == first + keep;
                    let torn_here = if last { x >> 60 < 5 } else { x >> 59 == 0 };
                    if torn_here {
                        let (a, b) = ((s * SECTOR).max(start), ((s + 1) * SECTOR).min(kept_end));
                        for byte in &mut survived[a..b] {
                            x = x
                                .wrapping_mul(6364136223846793005)
                                .wrapping_add(1442695040888963407);
                            *byte = (x >> 33) as u8;
                        }
                        torn += 1;
                    }
                }
            }
            let lost = f.data.len().saturating_sub(survived.len()) as u64;
            f.data = survived.clone();
            f.durable = survived;
            f.dirty_from = None;
            d.stats.torn_sectors += torn;
            d.stats.lost_bytes += lost;
        }
        let paths: Vec<PathBuf> = d.dirs.keys().cloned().collect();
        for p in paths {
            let Some(dir) = d.dirs.get(&p).cloned() else {
                continue;
            };
            let mut entries = dir.durable.clone();
            let names: std::collections::BTreeSet<&String> =
                dir.entries.keys().chain(dir.durable.keys()).collect();
            for name in names {
                let now = dir.entries.get(name);
                let then = dir.durable.get(name);
                if now == then {
                    continue;
                }
                // A change the directory sync never covered: kept or lost.
                if d.next_random().is_multiple_of(2) {
                    match now {
                        Some(id) => entries.insert(name.clone(), *id),
                        None => entries.remove(name),
                    };
                } else {
                    d.stats.reverted_entries += 1;
                }
            }
            if let Some(dir) = d.dirs.get_mut(&p) {
                dir.entries = entries.clone();
                dir.durable = entries;
            }
        }
        d.forget_unnamed_files();
    }

    fn next_random(&mut self) -> u64 {
        splitmix64(&mut self.rng)
    }
    /// Files no directory names any more are gone.
    fn forget_unnamed_files(&mut self) {
        let live: std::collections::BTreeSet<u64> = self
            .dirs
            .values()
            .flat_map(|x| x.entries.values().copied())
            .collect();
        self.files.retain(|id, _| live.contains(id));
    }
    /// Files neither the directories nor what a crash would bring back name are gone
    /// for good (a checkpoint replaced by a rename, a removed segment once its
    /// directory is synced): without this every replaced file stayed in memory.
    fn forget_unreferenced_files(&mut self) {
        let live: std::collections::BTreeSet<u64> = self
            .dirs
            .values()
            .flat_map(|x| x.entries.values().chain(x.durable.values()).copied())
            .collect();
        self.files
            .retain(|id, f| live.contains(id) || f.opened.strong_count() > 0);
    }
    fn used(&self) -> u64 {
        self.files.values().map(|f| f.data.len() as u64).sum()
    }
    fn lookup(&self, path: &Path) -> Option<u64> {
        let (dir, name) = split(path)?;
        self.dirs.get(&dir)?.entries.get(&name).copied()
    }
}

fn split(path: &Path) -> Option<(PathBuf, String)> {
    let name = path.file_name()?.to_str()?.to_string();
    Some((
        path.parent().map(Path::to_path_buf).unwrap_or_default(),
        name,
    ))
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{}: no such file", path.display()),
    )
}

/// The simulated disk. Cheap to clone; clones share the disk.
#[derive(Clone)]
pub struct SimDisk {
    inner: Arc<Mutex<Inner>>,
}

impl SimDisk {
    pub fn new(seed: u64) -> Self {
        let mut dirs = BTreeMap::new();
        dirs.insert(PathBuf::new(), Dir::default());
        SimDisk {
            inner: Arc::new(Mutex::new(Inner {
                files: BTreeMap::new(),
                dirs,
                next_id: 1,
                generation: 0,
                rng: seed,
                faults: Faults::default(),
                stats: DiskStats::default(),
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set_faults(&self, faults: Faults) {
        self.lock().faults = faults;
    }

    /// Bytes stored in all files now.
    pub fn used_bytes(&self) -> u64 {
        self.lock().used()
    }

    pub fn stats(&self) -> DiskStats {
        self.lock().stats.clone()
    }

    /// Power loss: unsynced data is dropped or torn, unsynced directory changes may
    /// vanish, and every open handle dies.
    pub fn crash(&self) {
        self.lock().crash();
    }

    /// Flips a bit of a file's stored (durable and current) bytes: bit rot.
    pub fn corrupt(&self, path: &Path, offset: usize) -> bool {
        let mut d = self.lock();
        let Some(id) = d.lookup(path) else {
            return false;
        };
        let Some(f) = d.files.get_mut(&id) else {
            return false;
        };
        if offset >= f.data.len() {
            return false;
        }
        f.data[offset] ^= 0x10;
        if offset < f.durable.len() {
            f.durable[offset] ^= 0x10;
        }
        true
    }
}

struct SimFile {
    disk: SimDisk,
    id: u64,
    generation: u64,
    _open: Arc<()>,
}

impl SimFile {
    fn with<T>(&self, f: impl FnOnce(&mut Inner, u64) -> io::Result<T>) -> io::Result<T> {
        let mut d = self.disk.lock();
        if d.generation != self.generation || !d.files.contains_key(&self.id) {
            return Err(io::Error::other(
                "stale file handle (the disk crashed or the file was removed)",
            ));
        }
        f(&mut d, self.id)
    }
}

fn file(d: &mut Inner, id: u64) -> io::Result<&mut FileState> {
    d.files
        .get_mut(&id)
        .ok_or_else(|| io::Error::other("file vanished"))
}

impl DiskFile for SimFile {
    fn size(&self) -> io::Result<u64> {
        self.with(|d, id| Ok(file(d, id)?.data.len() as u64))
    }
    fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        self.with(|d, id| {
            let offset = offset as usize;
            let grow = (offset + buf.len()).saturating_sub(file(d, id)?.data.len()) as u64;
            if let Some(cap) = d.faults.capacity_bytes {
                if d.used() + grow > cap {
                    d.stats.full_disk_writes += 1;
                    // A real full disk may take part of the write before failing.
                    let room = cap.saturating_sub(d.used()) as usize;
                    let f = file(d, id)?;
                    let part = room.min(buf.len());
                    if f.data.len() < offset + part {
                        f.data.resize(offset + part, 0);
                    }
                    f.data[offset..offset + part].copy_from_slice(&buf[..part]);
                    f.dirty_from = Some(f.dirty_from.map_or(offset, |x| x.min(offset)));
                    return Err(io::Error::new(
                        io::ErrorKind::StorageFull,
                        "no space left on device",
                    ));
                }
            }
            let f = file(d, id)?;
            if f.data.len() < offset + buf.len() {
                f.data.resize(offset + buf.len(), 0);
            }
            f.data[offset..offset + buf.len()].copy_from_slice(buf);
            f.dirty_from = Some(f.dirty_from.map_or(offset, |x| x.min(offset)));
            Ok(())
        })
    }
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.with(|d, id| {
            let per_mille = d.faults.corrupt_read_per_mille;
            let flip = per_mille > 0 && !buf.is_empty() && d.next_random() % 1000 < per_mille;
            let pick = d.next_random();
            let f = file(d, id)?;
            let offset = offset as usize;
            if offset + buf.len() > f.data.len() {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "read past end of file",
                ));
            }
            buf.copy_from_slice(&f.data[offset..offset + buf.len()]);
            if flip {
                buf[(pick as usize) % buf.len()] ^= 1 << (pick % 8);
                d.stats.corrupted_reads += 1;
            }
            Ok(())
        })
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.with(|d, id| {
            let f = file(d, id)?;
            let len = len as usize;
            f.data.resize(len, 0);
            f.dirty_from = Some(f.dirty_from.map_or(len, |x| x.min(len)));
            Ok(())
        })
    }
    fn sync(&self) -> io::Result<()> {
        self.with(|d, id| {
            d.power_fails_at_sync()?;
            if d.faults.fail_sync {
                d.stats.failed_syncs += 1;
                return Err(io::Error::other("injected fsync failure"));
            }
            d.stats.syncs += 1;
            let f = file(d, id)?;
            if let Some(from) = f.dirty_from.take() {
                let from = from.min(f.data.len()).min(f.durable.len());
                f.durable.truncate(from);
                f.durable.extend_from_slice(&f.data[from..]);
            }
            Ok(())
        })
    }
}

impl Disk for SimDisk {
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn DiskFile>> {
        let mut d = self.lock();
        let (dir, name) = split(path).ok_or_else(|| not_found(path))?;
        let id = match d.dirs.get(&dir).and_then(|x| x.entries.get(&name)).copied() {
            Some(id) => id,
            None if create => {
                if !d.dirs.contains_key(&dir) {
                    return Err(not_found(&dir));
                }
                let id = d.next_id;
                d.next_id += 1;
                d.files.insert(id, FileState::default());
                if let Some(x) = d.dirs.get_mut(&dir) {
                    x.entries.insert(name, id);
                }
                id
            }
            None => return Err(not_found(path)),
        };
        let open = match d.files.get(&id).and_then(|f| f.opened.upgrade()) {
            Some(open) => open,
            None => {
                let open = Arc::new(());
                if let Some(f) = d.files.get_mut(&id) {
                    f.opened = Arc::downgrade(&open);
                }
                open
            }
        };
        Ok(Arc::new(SimFile {
            disk: self.clone(),
            id,
            generation: d.generation,
            _open: open,
        }))
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut d = self.lock();
        let mut p = PathBuf::new();
        for c in path.components() {
            p.push(c);
            d.dirs.entry(p.clone()).or_default();
        }
        Ok(())
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let d = self.lock();
        let mut names: Vec<String> = d
            .dirs
            .get(dir)
            .ok_or_else(|| not_found(dir))?
            .entries
            .keys()
            .cloned()
            .collect();
        // Subdirectories are entries too.
        for p in d.dirs.keys() {
            if p.parent() == Some(dir) && p != dir {
                if let Some(n) = p.file_name().and_then(|n| n.to_str()) {
                    names.push(n.to_string());
                }
            }
        }
        names.sort();
        Ok(names)
    }
    fn exists(&self, path: &Path) -> bool {
        let d = self.lock();
        d.dirs.contains_key(path) || d.lookup(path).is_some()
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut d = self.lock();
        let id = d.lookup(from).ok_or_else(|| not_found(from))?;
        let (fdir, fname) = split(from).ok_or_else(|| not_found(from))?;
        let (tdir, tname) = split(to).ok_or_else(|| not_found(to))?;
        if !d.dirs.contains_key(&tdir) {
            return Err(not_found(&tdir));
        }
        if let Some(x) = d.dirs.get_mut(&fdir) {
            x.entries.remove(&fname);
        }
        if let Some(x) = d.dirs.get_mut(&tdir) {
            x.entries.insert(tname, id);
        }
        d.forget_unreferenced_files();
        Ok(())
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut d = self.lock();
        let (dir, name) = split(path).ok_or_else(|| not_found(path))?;
        d.dirs
            .get_mut(&dir)
            .and_then(|x| x.entries.remove(&name))
            .ok_or_else(|| not_found(path))?;
        d.forget_unreferenced_files();
        Ok(())
    }
    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut d = self.lock();
        let doomed: Vec<PathBuf> = d
            .dirs
            .keys()
            .filter(|p| p.starts_with(path))
            .cloned()
            .collect();
        if doomed.is_empty() {
            return Err(not_found(path));
        }
        for p in doomed {
            d.dirs.remove(&p);
        }
        d.forget_unnamed_files();
        Ok(())
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let mut d = self.lock();
        d.power_fails_at_sync()?;
        if d.faults.fail_sync {
            d.stats.failed_syncs += 1;
            return Err(io::Error::other("injected fsync failure"));
        }
        let dir = d.dirs.get_mut(path).ok_or_else(|| not_found(path))?;
        dir.durable = dir.entries.clone();
        d.forget_unreferenced_files();
        Ok(())
    }
}
