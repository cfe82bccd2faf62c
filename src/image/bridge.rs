//! Async byte streams (an engine's archives) read by blocking code (the tar reader, the
//! compressors) on the blocking pool, a few chunks at a time: memory stays bounded whatever
//! the stream's size.

use std::io::{self, Read};
use std::pin::Pin;

use bytes::{Buf, Bytes};
use futures_util::{Stream, StreamExt};

/// A stream of bytes, as the engine gives archives.
pub(crate) type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, io::Error>> + Send>>;

/// Runs `read` on the blocking pool over the bytes of `stream`. When `read` returns before the
/// end, the rest of the stream is never read (dropping it ends the transfer).
pub(crate) async fn read_blocking<T, E, F>(stream: ByteStream, read: F) -> Result<T, E>
where
    T: Send + 'static,
    E: From<io::Error> + Send + 'static,
    F: FnOnce(&mut dyn Read) -> Result<T, E> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(8);
    let task = tokio::task::spawn_blocking(move || {
        let mut reader = ChannelReader {
            rx,
            current: Bytes::new(),
        };
        read(&mut reader)
    });
    let pump = async move {
        let mut stream = stream;
        while let Some(item) = stream.next().await {
            if tx.send(item).await.is_err() {
                // The reader is done.
                break;
            }
        }
    };
    let ((), out) = tokio::join!(pump, task);
    out.map_err(|e| io::Error::other(format!("a blocking task failed: {e}")))?
}

/// Runs `f` on the blocking pool.
pub(crate) async fn blocking<T, E, F>(f: F) -> Result<T, E>
where
    T: Send + 'static,
    E: From<io::Error> + Send + 'static,
    F: FnOnce() -> Result<T, E> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| io::Error::other(format!("a blocking task failed: {e}")))?
}

struct ChannelReader {
    rx: tokio::sync::mpsc::Receiver<io::Result<Bytes>>,
    current: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.current = b,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current.advance(n);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(parts: Vec<io::Result<&'static [u8]>>) -> ByteStream {
        Box::pin(futures_util::stream::iter(
            parts.into_iter().map(|p| p.map(Bytes::from_static)),
        ))
    }

    #[tokio::test]
    async fn blocking_code_reads_the_whole_stream_or_stops_early() {
        let all = read_blocking(chunks(vec![Ok(b"ab"), Ok(b""), Ok(b"cd")]), |r| {
            let mut s = String::new();
            r.read_to_string(&mut s)?;
            Ok::<_, io::Error>(s)
        })
        .await
        .unwrap();
        assert_eq!(all, "abcd");
        let first = read_blocking(chunks(vec![Ok(b"ab"), Ok(b"cd")]), |r| {
            let mut b = [0u8; 1];
            r.read_exact(&mut b)?;
            Ok::<_, io::Error>(b[0])
        })
        .await
        .unwrap();
        assert_eq!(first, b'a');
        let broken = read_blocking(
            chunks(vec![Ok(b"ab"), Err(io::Error::other("reset"))]),
            |r| {
                let mut s = Vec::new();
                r.read_to_end(&mut s)?;
                Ok::<_, io::Error>(s)
            },
        )
        .await;
        assert_eq!(broken.unwrap_err().to_string(), "reset");
    }
}
