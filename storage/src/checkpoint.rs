//! Small files replaced atomically: write a temp file, fsync it, rename it over the
//! old one, fsync the directory. A crash leaves either the old or the new contents.

use std::io;
use std::path::Path;

use sluice_core::env::Disk;

pub fn write_atomic(disk: &dyn Disk, path: &Path, contents: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new(""));
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = Path::new(&tmp);
    let file = disk.open(tmp, true)?;
    file.set_len(0)?;
    file.write_at(0, contents)?;
    file.sync()?;
    disk.rename(tmp, path)?;
    disk.sync_dir(dir)
}

/// Reads a whole small file; `Ok(None)` when it does not exist.
pub fn read(disk: &dyn Disk, path: &Path) -> io::Result<Option<Vec<u8>>> {
    if !disk.exists(path) {
        return Ok(None);
    }
    let file = disk.open(path, false)?;
    let mut buf = vec![0u8; file.size()? as usize];
    file.read_exact_at(0, &mut buf)?;
    Ok(Some(buf))
}
