//! Small files replaced atomically: write a temp file, fsync it, rename it over the
//! old one, fsync the directory. A crash leaves either the old or the new contents.
//! A CRC-32C trailer line guards the contents against bad reads and bit rot: a
//! damaged checkpoint is an error, never silently different state.

use std::io;
use std::path::Path;

use sluice_core::env::Disk;

const TRAILER: &str = "crc32c=";
/// Reads of a checkpoint that fails its checksum before it is declared corrupt.
const REREADS: usize = 8;

pub fn write_atomic(disk: &dyn Disk, path: &Path, contents: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new(""));
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = Path::new(&tmp);
    let mut framed = contents.to_vec();
    framed.extend_from_slice(format!("{TRAILER}{:08x}\n", crc32c::crc32c(contents)).as_bytes());
    let file = disk.open(tmp, true)?;
    file.set_len(0)?;
    file.write_at(0, &framed)?;
    file.sync()?;
    disk.rename(tmp, path)?;
    disk.sync_dir(dir)
}

/// The contents without the trailer, if the checksum holds.
fn verify(bytes: &[u8]) -> Option<&[u8]> {
    let text_end = bytes.len().checked_sub(TRAILER.len() + 9)?;
    let (contents, trailer) = bytes.split_at(text_end);
    let hex = trailer
        .strip_prefix(TRAILER.as_bytes())?
        .strip_suffix(b"\n")?;
    let stored = u32::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
    (stored == crc32c::crc32c(contents)).then_some(contents)
}

/// Reads a checkpoint; `Ok(None)` when it does not exist, `InvalidData` when it
/// fails its checksum on every read.
pub fn read(disk: &dyn Disk, path: &Path) -> io::Result<Option<Vec<u8>>> {
    if !disk.exists(path) {
        return Ok(None);
    }
    let file = disk.open(path, false)?;
    let mut buf = vec![0u8; file.size()? as usize];
    for _ in 0..REREADS {
        file.read_exact_at(0, &mut buf)?;
        if let Some(contents) = verify(&buf) {
            return Ok(Some(contents.to_vec()));
        }
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{} fails its CRC-32C checksum", path.display()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailer_round_trips_and_catches_damage() {
        let mut framed = b"a 1\nb 2\n".to_vec();
        framed.extend_from_slice(
            format!("{TRAILER}{:08x}\n", crc32c::crc32c(b"a 1\nb 2\n")).as_bytes(),
        );
        assert_eq!(verify(&framed), Some(&b"a 1\nb 2\n"[..]));
        framed[0] ^= 1;
        assert_eq!(verify(&framed), None);
        assert_eq!(verify(b"short"), None);
    }
}
