//! One file-system entry of a layer, read from any tar an engine gives and written back in one
//! stable form: what the entry is (type, permission bits, owner, time, size, link, device,
//! file capabilities) and nothing of the machine or the tar writer that made it (user names,
//! access and change times, other extended attributes, header flavour).

use std::cmp::Ordering;
use std::io::{self, Read, Write};

/// What an entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kind {
    Dir,
    File,
    Symlink,
    /// A hard link to an earlier entry of the same layer (its path).
    Link,
    Char,
    Block,
    Fifo,
}

/// An entry's header, normalised. Paths are bytes: names need not be UTF-8.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Header {
    /// Relative to the root, without a leading or trailing `/`.
    pub(crate) path: Vec<u8>,
    pub(crate) kind: Kind,
    /// Permission bits with set-user-id, set-group-id and sticky (`0o7777`).
    pub(crate) mode: u32,
    pub(crate) uid: u64,
    pub(crate) gid: u64,
    /// Modification time, whole seconds.
    pub(crate) mtime: u64,
    /// Content bytes (regular files only).
    pub(crate) size: u64,
    /// A symlink's target as written, or a hard link's target path (relative, like `path`).
    pub(crate) link: Vec<u8>,
    pub(crate) dev: (u32, u32),
    /// `security.capability`, the one extended attribute layers keep (what the engines keep).
    pub(crate) capability: Option<Vec<u8>>,
}

/// The extended attribute kept, as PAX writes it.
const CAPABILITY: &str = "SCHILY.xattr.security.capability";

impl Header {
    /// The header of a tar entry, or `None` for an entry that is no file (a PAX global header,
    /// a socket the writer could not represent). `base` is prefixed to its path and, for a hard
    /// link, to its target: the archive of `/a/b` names its entries `b/...`, so `base` is `a`.
    pub(crate) fn read<R: Read>(
        entry: &mut tar::Entry<'_, R>,
        base: &[u8],
    ) -> io::Result<Option<Self>> {
        use tar::EntryType as T;
        let h = entry.header();
        let kind = match h.entry_type() {
            T::Regular | T::Continuous => Kind::File,
            T::Directory => Kind::Dir,
            T::Symlink => Kind::Symlink,
            T::Link => Kind::Link,
            T::Char => Kind::Char,
            T::Block => Kind::Block,
            T::Fifo => Kind::Fifo,
            _ => return Ok(None),
        };
        let mode = h.mode()? & 0o7777;
        let mut uid = h.uid()?;
        let mut gid = h.gid()?;
        let mtime = h.mtime()?;
        let dev = match kind {
            Kind::Char | Kind::Block => (
                h.device_major()?.unwrap_or(0),
                h.device_minor()?.unwrap_or(0),
            ),
            _ => (0, 0),
        };
        let path = join(base, &clean(&entry.path_bytes()));
        let link = match (&kind, entry.link_name_bytes()) {
            (Kind::Link, Some(l)) => join(base, &clean(&l)),
            (Kind::Symlink, Some(l)) => l.into_owned(),
            _ => Vec::new(),
        };
        let size = if kind == Kind::File { entry.size() } else { 0 };
        let mut capability = None;
        if let Some(pax) = entry.pax_extensions()? {
            for ext in pax {
                let ext = ext?;
                match ext.key_bytes() {
                    b"uid" => uid = parse_num(ext.value_bytes()).unwrap_or(uid),
                    b"gid" => gid = parse_num(ext.value_bytes()).unwrap_or(gid),
                    k if k == CAPABILITY.as_bytes() => {
                        capability = Some(ext.value_bytes().to_vec());
                    }
                    _ => {}
                }
            }
        }
        Ok(Some(Self {
            path,
            kind,
            mode,
            uid,
            gid,
            mtime,
            size,
            link,
            dev,
            capability,
        }))
    }

    /// Writes the header (a PAX header first when a field does not fit ustar or a name is not
    /// ASCII, as Go's writer does). The content, if any, follows: see [`pad`].
    pub(crate) fn write(&self, out: &mut impl Write) -> io::Result<()> {
        let mut name = self.path.clone();
        if self.kind == Kind::Dir && !name.is_empty() {
            name.push(b'/');
        }
        let mut pax: Vec<(&str, Vec<u8>)> = Vec::new();
        let mut h = tar::Header::new_ustar();
        let split = split_ustar(&name);
        if split.is_none() {
            pax.push(("path", name.clone()));
        }
        let linked = matches!(self.kind, Kind::Link | Kind::Symlink);
        if linked && (self.link.len() > 100 || !self.link.is_ascii()) {
            pax.push(("linkpath", self.link.clone()));
        }
        const MAX_ID: u64 = 0o7_777_777;
        if self.uid > MAX_ID {
            pax.push(("uid", self.uid.to_string().into_bytes()));
        }
        if self.gid > MAX_ID {
            pax.push(("gid", self.gid.to_string().into_bytes()));
        }
        const MAX_SIZE: u64 = 0o77_777_777_777;
        if self.size > MAX_SIZE {
            pax.push(("size", self.size.to_string().into_bytes()));
        }
        if let Some(cap) = &self.capability {
            pax.push((CAPABILITY, cap.clone()));
        }
        pax.sort();
        if !pax.is_empty() {
            write_pax(out, &name, &pax)?;
        }
        let ustar = h.as_ustar_mut().expect("a ustar header");
        match split {
            Some((prefix, base)) => {
                ustar.prefix[..prefix.len()].copy_from_slice(prefix);
                ustar.name[..base.len()].copy_from_slice(base);
            }
            None => {
                let short = ascii_tail(&name, 100);
                ustar.name[..short.len()].copy_from_slice(&short);
            }
        }
        if linked {
            let short = ascii_tail(&self.link, 100);
            ustar.linkname[..short.len()].copy_from_slice(&short);
        }
        use tar::EntryType as T;
        let (ty, bits) = match self.kind {
            Kind::Dir => (T::Directory, 0o040_000),
            Kind::File => (T::Regular, 0o100_000),
            Kind::Link => (T::Link, 0o100_000),
            Kind::Symlink => (T::Symlink, 0o120_000),
            Kind::Char => (T::Char, 0o020_000),
            Kind::Block => (T::Block, 0o060_000),
            Kind::Fifo => (T::Fifo, 0o010_000),
        };
        h.set_entry_type(ty);
        h.set_mode(self.mode | bits);
        h.set_uid(if self.uid > MAX_ID { 0 } else { self.uid });
        h.set_gid(if self.gid > MAX_ID { 0 } else { self.gid });
        h.set_size(if self.size > MAX_SIZE { 0 } else { self.size });
        h.set_mtime(self.mtime);
        if matches!(self.kind, Kind::Char | Kind::Block) {
            h.set_device_major(self.dev.0)?;
            h.set_device_minor(self.dev.1)?;
        }
        h.set_cksum();
        out.write_all(h.as_bytes())
    }
}

/// Zero bytes that end a content of `size` bytes on a 512-byte block.
pub(crate) fn pad(out: &mut impl Write, size: u64) -> io::Result<()> {
    let rest = (512 - size % 512) % 512;
    out.write_all(&[0u8; 512][..usize::try_from(rest).unwrap_or(0)])
}

/// The two zero blocks that end an archive.
pub(crate) fn finish(out: &mut impl Write) -> io::Result<()> {
    out.write_all(&[0u8; 1024])
}

/// A PAX extended header for `name`, its records in key order. Named as Go names it
/// (`DIR/PaxHeaders.0/BASE`): no process id or time, so the bytes depend on the entry alone.
fn write_pax(out: &mut impl Write, name: &[u8], records: &[(&str, Vec<u8>)]) -> io::Result<()> {
    let mut data = Vec::new();
    for (key, value) in records {
        // "%d %s=%s\n", where the length counts itself.
        let body = key.len() + value.len() + 3;
        let mut len = body + 1;
        while len != body + len.to_string().len() {
            len = body + len.to_string().len();
        }
        data.extend_from_slice(format!("{len} {key}=").as_bytes());
        data.extend_from_slice(value);
        data.push(b'\n');
    }
    let trimmed = name.strip_suffix(b"/").unwrap_or(name);
    let (dir, base) = match trimmed.iter().rposition(|&b| b == b'/') {
        Some(i) => (&trimmed[..=i], &trimmed[i + 1..]),
        None => (&b""[..], trimmed),
    };
    let mut pax_name = dir.to_vec();
    pax_name.extend_from_slice(b"PaxHeaders.0/");
    pax_name.extend_from_slice(base);
    let short = ascii_tail(&pax_name, 100);
    let mut h = tar::Header::new_ustar();
    let ustar = h.as_ustar_mut().expect("a ustar header");
    ustar.name[..short.len()].copy_from_slice(&short);
    h.set_entry_type(tar::EntryType::XHeader);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(data.len() as u64);
    h.set_cksum();
    out.write_all(h.as_bytes())?;
    out.write_all(&data)?;
    pad(out, data.len() as u64)
}

/// `name` as ustar's prefix and name fields, when it fits them and is ASCII.
fn split_ustar(name: &[u8]) -> Option<(&[u8], &[u8])> {
    if !name.is_ascii() {
        return None;
    }
    if name.len() <= 100 {
        return Some((&[], name));
    }
    // The prefix ends at a `/` (not stored); the name after it, trailing `/` included.
    let body = name.strip_suffix(b"/").unwrap_or(name);
    (0..body.len())
        .rev()
        .filter(|&i| body[i] == b'/')
        .find(|&i| i <= 155 && name.len() - i - 1 <= 100 && i > 0)
        .map(|i| (&name[..i], &name[i + 1..]))
}

/// At most `max` bytes of `name` for a field a PAX record overrides: its tail (the part that
/// tells entries apart), non-ASCII bytes as `_`.
fn ascii_tail(name: &[u8], max: usize) -> Vec<u8> {
    let start = name.len().saturating_sub(max);
    name[start..]
        .iter()
        .map(|&b| if b.is_ascii() && b != 0 { b } else { b'_' })
        .collect()
}

fn parse_num(v: &[u8]) -> Option<u64> {
    std::str::from_utf8(v).ok()?.parse().ok()
}

/// A tar name without `./`, leading or trailing `/`.
pub(crate) fn clean(name: &[u8]) -> Vec<u8> {
    let mut n = name;
    while let Some(rest) = n.strip_prefix(b"./") {
        n = rest;
    }
    while let Some(rest) = n.strip_prefix(b"/") {
        n = rest;
    }
    while let Some(rest) = n.strip_suffix(b"/") {
        n = rest;
    }
    if n == b"." {
        n = b"";
    }
    n.to_vec()
}

/// `base/name` (`name` when `base` is empty).
pub(crate) fn join(base: &[u8], name: &[u8]) -> Vec<u8> {
    if base.is_empty() {
        return name.to_vec();
    }
    if name.is_empty() {
        return base.to_vec();
    }
    let mut out = Vec::with_capacity(base.len() + 1 + name.len());
    out.extend_from_slice(base);
    out.push(b'/');
    out.extend_from_slice(name);
    out
}

/// The order of a layer's entries: a folder, then what is in it, names compared byte by byte
/// (the order of a walk of the tree that reads each folder sorted, as the engines' own layers
/// have it). A folder always comes before its contents.
pub(crate) fn path_order(a: &[u8], b: &[u8]) -> Ordering {
    a.split(|&c| c == b'/').cmp(b.split(|&c| c == b'/'))
}

/// A path as the engine's JSON shows it: each byte that is not part of valid UTF-8 becomes
/// U+FFFD, one per byte, as Go's encoder writes it.
pub(crate) fn as_engine_text(path: &[u8]) -> String {
    let mut out = String::with_capacity(path.len());
    for chunk in path.utf8_chunks() {
        out.push_str(chunk.valid());
        for _ in chunk.invalid() {
            out.push('\u{FFFD}');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &[u8]) -> Header {
        Header {
            path: path.to_vec(),
            kind: Kind::File,
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 1_700_000_000,
            size: 3,
            link: Vec::new(),
            dev: (0, 0),
            capability: None,
        }
    }

    fn round_trip(h: &Header) -> Header {
        let mut out = Vec::new();
        h.write(&mut out).unwrap();
        if h.kind == Kind::File {
            out.extend_from_slice(&b"abc"[..usize::try_from(h.size).unwrap()]);
            pad(&mut out, h.size).unwrap();
        }
        finish(&mut out).unwrap();
        let mut a = tar::Archive::new(&out[..]);
        let mut entries = a.entries().unwrap();
        let mut e = entries.next().unwrap().unwrap();
        let read = Header::read(&mut e, b"").unwrap().unwrap();
        assert!(entries.next().is_none());
        read
    }

    #[test]
    fn headers_survive_a_round_trip_whatever_their_names_and_numbers() {
        let long: Vec<u8> = [&b"a/"[..], &[b'x'; 150][..], b"/file"].concat();
        let very_long: Vec<u8> = [&[b'y'; 120][..], b"/", &[b'z'; 120][..]].concat();
        let mut cases = vec![
            file(b"etc/passwd"),
            file(b"tmp/caf\xe9"),
            file(&long),
            file(&very_long),
            Header {
                uid: 1 << 30,
                gid: 70_000,
                capability: Some(vec![1, 0, 0, 2, 0, 0x20, 0, 0]),
                ..file(b"usr/bin/ping")
            },
            Header {
                kind: Kind::Dir,
                mode: 0o1777,
                size: 0,
                ..file(b"tmp")
            },
            Header {
                kind: Kind::Symlink,
                size: 0,
                link: b"../\xff/target".to_vec(),
                ..file(b"bin/sh")
            },
            Header {
                kind: Kind::Link,
                size: 0,
                link: b"usr/bin/perl".to_vec(),
                ..file(b"usr/bin/perl5.36.0")
            },
            Header {
                kind: Kind::Char,
                size: 0,
                dev: (1, 3),
                ..file(b"dev/null")
            },
        ];
        cases.push(Header {
            mode: 0o4755,
            ..file(b"usr/bin/su")
        });
        for h in cases {
            assert_eq!(round_trip(&h), h, "{}", String::from_utf8_lossy(&h.path));
        }
    }

    #[test]
    fn a_header_is_the_same_bytes_every_time() {
        let h = Header {
            capability: Some(vec![1, 2, 3]),
            ..file(b"tmp/caf\xe9")
        };
        let (mut a, mut b) = (Vec::new(), Vec::new());
        h.write(&mut a).unwrap();
        h.write(&mut b).unwrap();
        assert_eq!(a, b);
        assert!(
            !a.windows(5).any(|w| w == b"root\0"),
            "no user names are written"
        );
    }

    #[test]
    fn entries_are_ordered_as_a_sorted_walk() {
        let mut paths: Vec<&[u8]> = vec![b"a-b", b"a/x", b"a", b"a/.wh.y", b"", b"b", b"a/x/z"];
        paths.sort_by(|a, b| path_order(a, b));
        assert_eq!(
            paths,
            vec![
                &b""[..],
                &b"a"[..],
                &b"a/.wh.y"[..],
                &b"a/x"[..],
                &b"a/x/z"[..],
                &b"a-b"[..],
                &b"b"[..]
            ]
        );
    }

    #[test]
    fn names_that_are_not_utf8_read_as_the_engine_lists_them() {
        assert_eq!(as_engine_text(b"tmp/caf\xe9"), "tmp/caf\u{FFFD}");
        assert_eq!(as_engine_text(b"a\xe2\x82b"), "a\u{FFFD}\u{FFFD}b");
        assert_eq!(as_engine_text("é".as_bytes()), "é");
        assert_eq!(clean(b"./a/b/"), b"a/b");
        assert_eq!(join(b"a", b"b"), b"a/b");
        assert_eq!(join(b"", b"b"), b"b");
    }
}
