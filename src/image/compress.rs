//! Layer compression: a layer's tar is hashed (its diff id) and compressed into a store blob
//! in one pass.

use std::io::{self, Write};

use sha2::{Digest as _, Sha256};

use super::store::{BlobStore, BlobWriter};
use super::{media, Descriptor};

/// How layers are compressed. The bytes, so the digests, depend on the compressor's code as
/// well as on the level: `Cargo.toml` pins the compressor crates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Compression {
    /// Level 0-9 (zlib-rs).
    Gzip { level: u32 },
    /// Level 1-19 (libzstd).
    Zstd { level: i32 },
}

impl Default for Compression {
    /// gzip at level 3: what every client pulls, within 2% of the size of zlib's default
    /// level 6, in two thirds of its time (README "Compression").
    fn default() -> Self {
        Compression::Gzip {
            level: DEFAULT_GZIP_LEVEL,
        }
    }
}

/// The gzip level when the file names none.
const DEFAULT_GZIP_LEVEL: u32 = 3;

/// Changes whenever the same input may compress to other bytes (a compressor upgrade): cached
/// layer blobs made before are not reused for reproducible images.
const COMPRESSORS: &str = "zlib-rs-0.6.9+zstd-1.6.0+chunks-128k+gzip-members-1m";

/// A layer's tar reaches zstd in pieces of this size, however it was written: the
/// compressors' output depends on how their input is split (two exports of one layer, read
/// from two engines in other pieces, compressed to other bytes).
const CHUNK: usize = 128 * 1024;

/// Bytes of a layer's tar per gzip member: members are compressed in parallel. Each starts
/// with an empty dictionary, which costs well under 1% of the size at this length.
const MEMBER: usize = 1 << 20;

impl Compression {
    /// The compression a pipeline's `[image]` table asks for.
    pub(crate) fn of(image: &crate::model::ImageSettings) -> Self {
        use crate::model::LayerCompression as C;
        match image.compression {
            C::Gzip => Compression::Gzip {
                level: image
                    .level
                    .and_then(|l| u32::try_from(l).ok())
                    .unwrap_or(DEFAULT_GZIP_LEVEL),
            },
            C::Zstd => Compression::Zstd {
                level: image.level.unwrap_or(3),
            },
        }
    }

    /// The layer media type in a manifest of the tool's default format: a Docker manifest for
    /// gzip, an OCI one for zstd (which only OCI names).
    pub(crate) fn layer_media_type(self) -> &'static str {
        match self {
            Compression::Gzip { .. } => media::DOCKER_LAYER_GZIP,
            Compression::Zstd { .. } => media::OCI_LAYER_ZSTD,
        }
    }

    /// Whether manifests of these layers must be OCI manifests.
    pub(crate) fn needs_oci(self) -> bool {
        matches!(self, Compression::Zstd { .. })
    }

    /// A name of this setting and of the compressor's code, for cache lookups.
    pub(crate) fn id(self) -> String {
        match self {
            Compression::Gzip { level } => format!("gzip-{level}-{COMPRESSORS}"),
            Compression::Zstd { level } => format!("zstd-{level}-{COMPRESSORS}"),
        }
    }

    /// A writer of one layer into `store`.
    pub(crate) fn writer(self, store: &BlobStore) -> io::Result<LayerWriter> {
        let blob = store.writer()?;
        let encoder = match self {
            Compression::Gzip { level } => Encoder::Gzip(Members::new(blob, level.min(9))),
            Compression::Zstd { level } => {
                let mut e = zstd::stream::write::Encoder::new(blob, level)?;
                e.include_checksum(false)?;
                e.include_contentsize(false)?;
                Encoder::Zstd(e)
            }
        };
        let chunk = match self {
            Compression::Gzip { .. } => MEMBER,
            Compression::Zstd { .. } => CHUNK,
        };
        Ok(LayerWriter {
            store: store.clone(),
            diff: Sha256::new(),
            size: 0,
            encoder,
            compression: self,
            chunk,
            pending: Vec::with_capacity(chunk),
        })
    }
}

enum Encoder {
    Gzip(Members),
    Zstd(zstd::stream::write::Encoder<'static, BlobWriter>),
}

/// A gzip blob written as a series of members, one per [`MEMBER`] bytes of input, each
/// compressed on a thread of its own (a few at once, as many as the machine has cores) and
/// written in order. Concatenated members are one valid gzip stream (RFC 1952 section 2.2):
/// every client reads them (Go's `gzip.Reader`, pigz, zlib's `gunzip`). The bytes depend on
/// the input, the level and [`MEMBER`] alone, never on the number of threads.
struct Members {
    blob: BlobWriter,
    level: u32,
    /// Members being compressed, oldest first.
    running: std::collections::VecDeque<std::thread::JoinHandle<io::Result<Vec<u8>>>>,
    /// How many members may be compressed at once.
    threads: usize,
    /// Whether any member was started (an empty layer is still one member).
    started: bool,
}

impl Members {
    fn new(blob: BlobWriter, level: u32) -> Self {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
        Self {
            blob,
            level,
            running: std::collections::VecDeque::new(),
            threads,
            started: false,
        }
    }

    /// Starts compressing one member; writes the oldest ones out while too many are running.
    fn push(&mut self, input: Vec<u8>) -> io::Result<()> {
        let level = self.level;
        self.started = true;
        self.running
            .push_back(std::thread::spawn(move || member(&input, level)));
        while self.running.len() > self.threads {
            self.write_oldest()?;
        }
        Ok(())
    }

    fn write_oldest(&mut self) -> io::Result<()> {
        if let Some(job) = self.running.pop_front() {
            let bytes = job
                .join()
                .map_err(|_| io::Error::other("the compressor thread panicked"))??;
            self.blob.write_all(&bytes)?;
        }
        Ok(())
    }

    fn finish(mut self) -> io::Result<BlobWriter> {
        if !self.started {
            self.push(Vec::new())?;
        }
        while !self.running.is_empty() {
            self.write_oldest()?;
        }
        Ok(self.blob)
    }
}

/// One gzip member of `input`: no name and no time in its header, so the bytes depend on the
/// input alone.
fn member(input: &[u8], level: u32) -> io::Result<Vec<u8>> {
    let mut e = flate2::GzBuilder::new().write(
        Vec::with_capacity(input.len() / 2 + 64),
        flate2::Compression::new(level),
    );
    e.write_all(input)?;
    e.finish()
}

/// A layer being written: its tar goes in; its diff id and compressed blob come out.
pub(crate) struct LayerWriter {
    store: BlobStore,
    diff: Sha256,
    size: u64,
    encoder: Encoder,
    compression: Compression,
    /// Input is compressed in pieces of this many bytes.
    chunk: usize,
    /// Input not yet compressed: less than `chunk` bytes.
    pending: Vec<u8>,
}

impl std::fmt::Debug for LayerWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "LayerWriter({:?}, {} bytes)",
            self.compression, self.size
        )
    }
}

/// A layer in the store.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Layer {
    /// `sha256:` digest of the uncompressed tar, as image configs list it.
    pub(crate) diff_id: String,
    /// The compressed blob.
    pub(crate) blob: Descriptor,
    /// Bytes of the uncompressed tar.
    pub(crate) tar_size: u64,
}

impl Write for LayerWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let take = (self.chunk - self.pending.len()).min(buf.len());
        self.pending.extend_from_slice(&buf[..take]);
        self.diff.update(&buf[..take]);
        self.size += take as u64;
        if self.pending.len() == self.chunk {
            self.compress()?;
        }
        Ok(take)
    }

    /// Nothing to do: a flush of the compressor would change its output; the input is
    /// compressed in whole chunks and at [`LayerWriter::finish`].
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl LayerWriter {
    /// Compresses the pending input.
    fn compress(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        match &mut self.encoder {
            Encoder::Gzip(e) => {
                let next = Vec::with_capacity(self.chunk);
                e.push(std::mem::replace(&mut self.pending, next))?;
            }
            Encoder::Zstd(e) => {
                e.write_all(&self.pending)?;
                self.pending.clear();
            }
        }
        Ok(())
    }

    /// Ends the compressed stream and moves the blob into place.
    pub(crate) fn finish(mut self) -> io::Result<Layer> {
        self.compress()?;
        let blob = match self.encoder {
            Encoder::Gzip(e) => e.finish()?,
            Encoder::Zstd(e) => e.finish()?,
        };
        let blob = blob.commit(self.compression.layer_media_type())?;
        let layer = Layer {
            diff_id: format!("sha256:{}", hex::encode(self.diff.finalize())),
            blob,
            tar_size: self.size,
        };
        // Only a shortcut for later reads of the same layer: a failure to write it changes
        // nothing.
        if let Ok(bytes) = serde_json::to_vec(&layer) {
            let key = stored_key(&layer.diff_id, self.compression);
            let _ = self.store.put_record(STORED_RECORD, &key, &bytes);
        }
        Ok(layer)
    }
}

/// The store record that maps a layer's diff id (and a compression) to its blob.
pub(crate) const STORED_RECORD: &str = "diffs";

fn stored_key(diff_id: &str, compression: Compression) -> String {
    format!("{diff_id}\n{}", compression.id())
}

/// The layer of diff id `diff_id` compressed with `compression`, when the store holds it: a
/// layer is compressed once, whichever image or export it comes in.
pub(crate) fn stored_layer(
    store: &BlobStore,
    diff_id: &str,
    compression: Compression,
) -> Option<Layer> {
    let bytes = store.record(STORED_RECORD, &stored_key(diff_id, compression))?;
    let layer: Layer = serde_json::from_slice(&bytes).ok()?;
    (layer.diff_id == diff_id && store.contains(&layer.blob.digest)).then_some(layer)
}

/// What a `diffs` record names, for the store's collector.
pub(crate) fn stored_names(bytes: &[u8]) -> Option<super::collect::Names> {
    let layer: Layer = serde_json::from_slice(bytes).ok()?;
    Some(super::collect::Names {
        image: None,
        blobs: vec![layer.blob.digest],
    })
}

/// The key of a layer downloaded from a registry: compressed by another writer, with
/// settings not known here. It serves only where any blob of its diff id will do (an engine
/// image's publish, the remote cache), never a reproducible image, whose blobs are the
/// tool's own compression.
fn fetched_key(diff_id: &str) -> String {
    format!("{diff_id}\nfetched")
}

/// The layer blob `blob` of the store, read through: its diff id (the digest of the tar it
/// holds) and the tar's size. gzip, zstd and plain tar blobs, by media type.
pub(crate) fn read_through(store: &BlobStore, blob: &Descriptor) -> io::Result<Layer> {
    let file = io::BufReader::with_capacity(256 * 1024, store.open(&blob.digest)?);
    let mut tar: Box<dyn io::Read> = if blob.media_type.ends_with("zstd") {
        Box::new(zstd::stream::read::Decoder::with_buffer(file)?)
    } else if blob.media_type.ends_with("gzip") {
        Box::new(flate2::bufread::MultiGzDecoder::new(file))
    } else {
        Box::new(file)
    };
    let mut hashed = HashedSize::default();
    io::copy(&mut tar, &mut hashed)?;
    Ok(Layer {
        diff_id: format!("sha256:{}", hex::encode(hashed.hash.finalize())),
        blob: blob.clone(),
        tar_size: hashed.size,
    })
}

/// A sink that hashes and counts what it is given.
#[derive(Default)]
struct HashedSize {
    hash: Sha256,
    size: u64,
}

impl Write for HashedSize {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.hash.update(buf);
        self.size += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Records a layer downloaded from a registry (see [`fetched_key`]).
pub(crate) fn record_fetched(store: &BlobStore, layer: &Layer) -> io::Result<()> {
    let bytes = serde_json::to_vec(layer).map_err(io::Error::other)?;
    store.put_record(STORED_RECORD, &fetched_key(&layer.diff_id), &bytes)
}

/// The layer of diff id `diff_id` compressed with `compression` (see [`stored_layer`]), else
/// one downloaded from a registry (see [`fetched_key`]).
pub(crate) fn any_layer(
    store: &BlobStore,
    diff_id: &str,
    compression: Compression,
) -> Option<Layer> {
    stored_layer(store, diff_id, compression).or_else(|| {
        let bytes = store.record(STORED_RECORD, &fetched_key(diff_id))?;
        let layer: Layer = serde_json::from_slice(&bytes).ok()?;
        (layer.diff_id == diff_id && store.contains(&layer.blob.digest)).then_some(layer)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn a_layer_is_hashed_and_compressed_in_one_pass_to_the_same_bytes_every_time() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::at(dir.path());
        // Words picked by a pseudo-random sequence: matches of every length and distance.
        let words = [
            "lib",
            "usr/share/",
            "vim",
            "\0\0\0",
            "0000644",
            "doc",
            "x86_64-linux",
        ];
        let mut state = 42u64;
        let input: Vec<u8> = (0..600_000)
            .flat_map(|_| {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1);
                words[(state >> 33) as usize % words.len()].bytes()
            })
            .collect();
        let expected_diff = format!("sha256:{}", hex::encode(Sha256::digest(&input)));
        for c in [Compression::default(), Compression::Zstd { level: 3 }] {
            let write = || {
                let mut w = c.writer(&store).unwrap();
                w.write_all(&input).unwrap();
                w.finish().unwrap()
            };
            let (a, b) = (write(), write());
            assert_eq!(a, b, "{c:?}: same input, same blob");
            // Written in other pieces (as an engine's stream gives them): the same blob.
            let mut w = c.writer(&store).unwrap();
            for (i, piece) in input.chunks(1000).enumerate() {
                let cut = i % 7 * 100;
                w.write_all(&piece[..cut.min(piece.len())]).unwrap();
                w.flush().unwrap();
                w.write_all(&piece[cut.min(piece.len())..]).unwrap();
            }
            assert_eq!(w.finish().unwrap(), a, "{c:?}: other pieces, same blob");
            assert_eq!(a.diff_id, expected_diff);
            assert_eq!(a.tar_size, input.len() as u64);
            let mut back = Vec::new();
            let file = store.open(&a.blob.digest).unwrap();
            match c {
                Compression::Gzip { .. } => {
                    let mut raw = Vec::new();
                    store
                        .open(&a.blob.digest)
                        .unwrap()
                        .read_to_end(&mut raw)
                        .unwrap();
                    assert_eq!(&raw[4..8], &[0, 0, 0, 0], "no time in the gzip header");
                    let mut first = Vec::new();
                    flate2::read::GzDecoder::new(raw.as_slice())
                        .read_to_end(&mut first)
                        .unwrap();
                    assert_eq!(first.len(), MEMBER, "the first member holds 1 MiB");
                    flate2::read::MultiGzDecoder::new(file)
                        .read_to_end(&mut back)
                        .unwrap();
                }
                Compression::Zstd { .. } => {
                    zstd::stream::read::Decoder::new(file)
                        .unwrap()
                        .read_to_end(&mut back)
                        .unwrap();
                }
            }
            assert_eq!(back, input);
        }
    }

    #[test]
    fn an_empty_layer_is_a_valid_gzip_blob() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::at(dir.path());
        let layer = Compression::default()
            .writer(&store)
            .unwrap()
            .finish()
            .unwrap();
        let mut back = Vec::new();
        flate2::read::MultiGzDecoder::new(store.open(&layer.blob.digest).unwrap())
            .read_to_end(&mut back)
            .unwrap();
        assert!(back.is_empty());
        assert_eq!(layer.tar_size, 0);
        assert!(layer.blob.size > 0, "one member, with its header");
    }
}
