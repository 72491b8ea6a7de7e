//! The production [`Disk`]: real files under a root directory, `pwrite`/`pread`, and
//! `fdatasync` for files and `fsync` for directories.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sluice_core::env::{Disk, DiskFile};

pub struct FileDisk {
    root: PathBuf,
}

impl FileDisk {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        FileDisk { root: root.into() }
    }
    fn path(&self, p: &Path) -> PathBuf {
        self.root.join(p)
    }
}

struct RealFile(File);

impl DiskFile for RealFile {
    fn size(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
    fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        self.0.write_all_at(buf, offset)
    }
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.0.read_exact_at(buf, offset)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
    fn sync(&self) -> io::Result<()> {
        self.0.sync_data()
    }
}

impl Disk for FileDisk {
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn DiskFile>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .truncate(false)
            .open(self.path(path))?;
        Ok(Arc::new(RealFile(file)))
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        fs::create_dir_all(self.path(path))
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(self.path(dir))? {
            if let Some(name) = entry?.file_name().to_str() {
                names.push(name.to_owned());
            }
        }
        names.sort();
        Ok(names)
    }
    fn exists(&self, path: &Path) -> bool {
        self.path(path).exists()
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(self.path(from), self.path(to))
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(self.path(path))
    }
    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        fs::remove_dir_all(self.path(path))
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        File::open(self.path(path))?.sync_all()
    }
}
