//! Reading the files a pipeline names (the pipeline itself, `--var-file`s, secret files),
//! which may come from a stranger: regular files only, of bounded size, never blocking.
//!
//! Opening a FIFO for reading blocks until a writer appears, and reading `/dev/zero` never
//! ends: the file is opened with `O_NONBLOCK` (and `O_NOCTTY`, so that a terminal never
//! becomes the controlling one), the opened handle is checked to be a regular file, and at
//! most `limit` bytes are read.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// Largest pipeline file or `--var-file`.
pub(crate) const FILE_LIMIT: u64 = 1 << 20;

/// Largest secret file.
pub(crate) const SECRET_LIMIT: u64 = 512 << 10;

/// Reads a regular file of at most `limit` bytes; anything else is an error that says why.
pub(crate) fn read_bounded(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    // Checked before opening, so that no device is ever opened (opening some has effects)...
    check(&std::fs::metadata(path)?, limit)?;
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    // ...and on the opened handle, which is what is read (the path may have changed).
    let meta = file.metadata()?;
    check(&meta, limit)?;
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    read_limited(file, limit, &mut bytes)?;
    Ok(bytes)
}

/// A regular file of at most `limit` bytes (as far as its metadata tells).
pub(crate) fn check(meta: &std::fs::Metadata, limit: u64) -> io::Result<()> {
    let kind = meta.file_type();
    if !kind.is_file() {
        let what = if kind.is_dir() {
            "a directory"
        } else if kind.is_fifo() {
            "a FIFO"
        } else if kind.is_socket() {
            "a socket"
        } else if kind.is_char_device() || kind.is_block_device() {
            "a device"
        } else {
            "not a file"
        };
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{what}, not a regular file"),
        ));
    }
    if meta.len() > limit {
        return Err(too_large(limit));
    }
    Ok(())
}

/// Reads to the end, failing past `limit` bytes (files like `/proc/self/environ` say they are
/// empty and are not).
fn read_limited(file: File, limit: u64, out: &mut Vec<u8>) -> io::Result<()> {
    file.take(limit + 1).read_to_end(out)?;
    if out.len() as u64 > limit {
        return Err(too_large(limit));
    }
    Ok(())
}

fn too_large(limit: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("larger than the limit of {}", size(limit)),
    )
}

/// `1 MiB`, `512 KiB`.
pub(crate) fn size(bytes: u64) -> String {
    if bytes >= 1 << 20 && bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else if bytes >= 1 << 10 && bytes.is_multiple_of(1 << 10) {
        format!("{} KiB", bytes >> 10)
    } else {
        format!("{bytes} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn mkfifo(path: &Path) {
        let status = std::process::Command::new("mkfifo")
            .arg(path)
            .status()
            .expect("mkfifo");
        assert!(status.success());
    }

    #[test]
    fn a_fifo_is_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        mkfifo(&fifo);
        let start = Instant::now();
        let err = read_bounded(&fifo, FILE_LIMIT).unwrap_err();
        assert!(start.elapsed() < Duration::from_secs(2));
        assert_eq!(err.to_string(), "a FIFO, not a regular file");
    }

    #[test]
    fn devices_and_directories_are_refused() {
        for (path, what) in [("/dev/zero", "a device"), ("/", "a directory")] {
            let err = read_bounded(Path::new(path), FILE_LIMIT).unwrap_err();
            assert_eq!(err.to_string(), format!("{what}, not a regular file"));
        }
    }

    #[test]
    fn files_are_read_up_to_the_limit_and_no_further() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"12345").unwrap();
        assert_eq!(read_bounded(&file, 5).unwrap(), b"12345");
        let err = read_bounded(&file, 4).unwrap_err();
        assert_eq!(err.to_string(), "larger than the limit of 4 bytes");
        // A file that says it is empty but is not.
        if Path::new("/proc/self/environ").exists() {
            let mut out = Vec::new();
            let f = File::open("/proc/self/environ").unwrap();
            let err = read_limited(f, 1, &mut out).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        }
    }

    #[test]
    fn sizes_read_well() {
        assert_eq!(size(FILE_LIMIT), "1 MiB");
        assert_eq!(size(SECRET_LIMIT), "512 KiB");
        assert_eq!(size(1000), "1000 bytes");
    }
}
