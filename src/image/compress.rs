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
    /// gzip at zlib's default level: what every client pulls, at the size the engines' own
    /// pushes have.
    fn default() -> Self {
        Compression::Gzip { level: 6 }
    }
}

/// Changes whenever the same input may compress to other bytes (a compressor upgrade): cached
/// layer blobs made before are not reused for reproducible images.
const COMPRESSORS: &str = "zlib-rs-0.6.9+zstd-1.6.0+chunks-128k";

/// A layer's tar reaches the compressor in pieces of this size, however it was written: the
/// compressors' output depends on how their input is split (two exports of one layer, read
/// from two engines in other pieces, compressed to other bytes).
const CHUNK: usize = 128 * 1024;

impl Compression {
    /// The compression a pipeline's `[image]` table asks for.
    pub(crate) fn of(image: &crate::model::ImageSettings) -> Self {
        use crate::model::LayerCompression as C;
        match image.compression {
            C::Gzip => Compression::Gzip {
                level: image.level.and_then(|l| u32::try_from(l).ok()).unwrap_or(6),
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
            Compression::Gzip { level } => {
                // No name and no time in the gzip header: the bytes depend on the input alone.
                Encoder::Gzip(
                    flate2::GzBuilder::new().write(blob, flate2::Compression::new(level.min(9))),
                )
            }
            Compression::Zstd { level } => {
                let mut e = zstd::stream::write::Encoder::new(blob, level)?;
                e.include_checksum(false)?;
                e.include_contentsize(false)?;
                Encoder::Zstd(e)
            }
        };
        Ok(LayerWriter {
            diff: Sha256::new(),
            size: 0,
            encoder,
            compression: self,
            pending: Vec::with_capacity(CHUNK),
        })
    }
}

enum Encoder {
    Gzip(flate2::write::GzEncoder<BlobWriter>),
    Zstd(zstd::stream::write::Encoder<'static, BlobWriter>),
}

/// A layer being written: its tar goes in; its diff id and compressed blob come out.
pub(crate) struct LayerWriter {
    diff: Sha256,
    size: u64,
    encoder: Encoder,
    compression: Compression,
    /// Input not yet compressed: less than [`CHUNK`] bytes.
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
        let take = (CHUNK - self.pending.len()).min(buf.len());
        self.pending.extend_from_slice(&buf[..take]);
        self.diff.update(&buf[..take]);
        self.size += take as u64;
        if self.pending.len() == CHUNK {
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
        match &mut self.encoder {
            Encoder::Gzip(e) => e.write_all(&self.pending)?,
            Encoder::Zstd(e) => e.write_all(&self.pending)?,
        }
        self.pending.clear();
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
        Ok(Layer {
            diff_id: format!("sha256:{}", hex::encode(self.diff.finalize())),
            blob,
            tar_size: self.size,
        })
    }
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
        let input: Vec<u8> = (0..150_000)
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
                    flate2::read::GzDecoder::new(file)
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
}
