//! A fault-injecting TCP proxy on 127.0.0.1 for failure tests (std threads only).
//!
//! Put it in front of a [`super::registry::Registry`] and use `proxy.addr` as the registry
//! address: the engine then reaches the registry only through the proxy. At most
//! `MAX_ACTIVE` connections are served at once (more are closed at once); everything stops
//! when the proxy is dropped.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const MAX_ACTIVE: usize = 64;
const TICK: Duration = Duration::from_millis(50);

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum FaultMode {
    /// Forward everything unchanged.
    PassThrough,
    /// On every connection: forward the first n client-to-upstream bytes, then reset (RST)
    /// both sides. Models a registry that never stays reachable for long enough.
    ResetAfterBytes(u64),
    /// Like `ResetAfterBytes(bytes)` but only for the first `times` connections that reach
    /// `bytes`; after that everything passes through. Models a transient fault that a retry
    /// gets past. (Counting connections that reach the threshold, not the first connections:
    /// a docker push opens several small API connections before the big upload.)
    ResetAfterBytesTimes { bytes: u64, times: usize },
    /// Answer the first `times` HTTP requests (one per connection) with
    /// `HTTP/1.1 500 Internal Server Error` and close; pass everything through afterwards.
    Http500 { times: usize },
    /// Hold every plain HTTP connection open, reading and discarding what the client sends,
    /// and never answer (until the proxy is dropped). Models a registry that hangs.
    Stall,
}

#[derive(Default)]
struct Stats {
    connections: AtomicUsize,
    active: AtomicUsize,
    tls_probes: AtomicUsize,
    faults: AtomicUsize,
    bytes_up: AtomicU64,
    bytes_down: AtomicU64,
}

pub(crate) struct FaultProxy {
    /// "127.0.0.1:PORT" of the proxy.
    pub(crate) addr: String,
    pub(crate) upstream: String,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// Listens on a free 127.0.0.1 port and forwards to `upstream` ("127.0.0.1:PORT").
    pub(crate) fn start(upstream: &str, mode: FaultMode) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("proxy: bind 127.0.0.1:0");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let stats = Arc::new(Stats::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp, up) = (Arc::clone(&stats), Arc::clone(&stop), upstream.to_string());
        let acceptor = std::thread::spawn(move || accept_loop(listener, up, mode, st, sp));
        FaultProxy {
            addr,
            upstream: upstream.to_string(),
            stats,
            stop,
            acceptor: Some(acceptor),
        }
    }

    /// Connections accepted so far (including faulted and refused ones).
    pub(crate) fn connections(&self) -> usize {
        self.stats.connections.load(SeqCst)
    }
    /// Connections that opened with a TLS handshake (the engine's HTTPS probe before it
    /// falls back to http); they are always passed through and never faulted.
    pub(crate) fn tls_probes(&self) -> usize {
        self.stats.tls_probes.load(SeqCst)
    }
    /// Faults injected so far: resets done, or 500 answers sent (= HTTP requests failed).
    pub(crate) fn faults(&self) -> usize {
        self.stats.faults.load(SeqCst)
    }
    /// Bytes forwarded client -> upstream.
    pub(crate) fn bytes_upstream(&self) -> u64 {
        self.stats.bytes_up.load(SeqCst)
    }
    /// Bytes forwarded upstream -> client.
    pub(crate) fn bytes_downstream(&self) -> u64 {
        self.stats.bytes_down.load(SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, SeqCst);
        if let Some(a) = self.acceptor.take() {
            let _ = a.join();
        }
    }
}

fn accept_loop(
    listener: TcpListener,
    upstream: String,
    mode: FaultMode,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
) {
    let mut handlers: Vec<JoinHandle<()>> = Vec::new();
    while !stop.load(SeqCst) {
        match listener.accept() {
            Ok((client, _)) => {
                stats.connections.fetch_add(1, SeqCst);
                handlers.retain(|h| !h.is_finished());
                if stats.active.load(SeqCst) >= MAX_ACTIVE {
                    continue; // dropped: closed at once
                }
                stats.active.fetch_add(1, SeqCst);
                let (up, mode, st, sp) = (
                    upstream.clone(),
                    mode.clone(),
                    Arc::clone(&stats),
                    Arc::clone(&stop),
                );
                handlers.push(std::thread::spawn(move || {
                    handle(client, &up, &mode, &st, &sp);
                    st.active.fetch_sub(1, SeqCst);
                }));
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    for h in handlers {
        let _ = h.join();
    }
}

fn handle(client: TcpStream, upstream: &str, mode: &FaultMode, stats: &Stats, stop: &AtomicBool) {
    let _ = client.set_nonblocking(false);
    // The engine first tries HTTPS on a loopback registry and falls back to plain http when
    // the answer is not TLS. Pass such TLS probes (first byte 0x16, a handshake record)
    // through untouched so that faults only ever hit plain HTTP traffic.
    let _ = client.set_read_timeout(Some(Duration::from_secs(30)));
    let mut first = [0u8; 1];
    match client.peek(&mut first) {
        Ok(1) => {}
        _ => return,
    }
    let mode = if first[0] == 0x16 {
        stats.tls_probes.fetch_add(1, SeqCst);
        &FaultMode::PassThrough
    } else {
        mode
    };
    // Takes one fault from the quota; false once `times` faults were injected.
    let take_fault = |times: usize| {
        stats
            .faults
            .fetch_update(SeqCst, SeqCst, |f| (f < times).then_some(f + 1))
            .is_ok()
    };
    let (budget, times) = match *mode {
        FaultMode::Stall => {
            stall(&client, stop);
            return;
        }
        FaultMode::PassThrough => (None, 0),
        FaultMode::ResetAfterBytes(n) => (Some(n), usize::MAX),
        FaultMode::ResetAfterBytesTimes { bytes, times } => (Some(bytes), times),
        FaultMode::Http500 { times } => {
            if take_fault(times) {
                answer_500(client);
                return;
            }
            (None, 0)
        }
    };
    let Ok(server) = TcpStream::connect(upstream) else {
        return;
    };
    if budget == Some(0) && take_fault(times) {
        reset(&client);
        reset(&server);
        return;
    }
    for s in [&client, &server] {
        let _ = s.set_read_timeout(Some(TICK));
        let _ = s.set_write_timeout(Some(Duration::from_secs(30)));
        let _ = s.set_nodelay(true);
    }
    let dead = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
        let dead = &dead;
        scope.spawn(move || pump(s2, c2, None, &|| false, &stats.bytes_down, dead, stop));
        let should_reset = || take_fault(times);
        if pump(
            client.try_clone().unwrap(),
            server.try_clone().unwrap(),
            budget,
            &should_reset,
            &stats.bytes_up,
            dead,
            stop,
        ) {
            reset(&client);
            reset(&server);
            dead.store(true, SeqCst);
        }
    });
    // All handles close here; with SO_LINGER 0 the close sends RST instead of FIN.
}

/// Reads and discards what `client` sends until it closes or the proxy stops.
fn stall(mut client: &TcpStream, stop: &AtomicBool) {
    let _ = client.set_read_timeout(Some(TICK));
    let mut buf = [0u8; 4096];
    while !stop.load(SeqCst) {
        match client.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return,
        }
    }
}

/// Copies `from` -> `to` until EOF, error, `dead` or `stop`. When `budget` bytes have been
/// copied, asks `should_reset`: true ends the copy (returns true), false copies on unlimited.
fn pump(
    mut from: TcpStream,
    mut to: TcpStream,
    budget: Option<u64>,
    should_reset: &dyn Fn() -> bool,
    counter: &AtomicU64,
    dead: &AtomicBool,
    stop: &AtomicBool,
) -> bool {
    let mut left = budget;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if dead.load(SeqCst) || stop.load(SeqCst) {
            return false;
        }
        let n = match from.read(&mut buf) {
            Ok(0) => {
                let _ = to.shutdown(Shutdown::Write);
                return false;
            }
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) =>
            {
                continue
            }
            Err(_) => {
                dead.store(true, SeqCst);
                return false;
            }
        };
        let mut take = left.map_or(n, |l| n.min(l as usize));
        if let Some(l) = left {
            if l == take as u64 {
                if should_reset() {
                    let _ = to.write_all(&buf[..take]);
                    counter.fetch_add(take as u64, SeqCst);
                    return true;
                }
                left = None;
                take = n;
            } else {
                left = Some(l - take as u64);
            }
        }
        if to.write_all(&buf[..take]).is_err() {
            dead.store(true, SeqCst);
            return false;
        }
        counter.fetch_add(take as u64, SeqCst);
    }
}

/// Reads one request head (and a Content-Length body, unless it waits for 100-continue),
/// answers 500 and closes cleanly.
fn answer_500(mut client: TcpStream) {
    let _ = client.set_read_timeout(Some(Duration::from_secs(10)));
    let mut head = Vec::new();
    let mut buf = [0u8; 8192];
    let end = loop {
        if let Some(p) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        match client.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        if head.len() > 64 * 1024 {
            return;
        }
    };
    let text = String::from_utf8_lossy(&head[..end]).to_ascii_lowercase();
    let header = |name: &str| {
        text.lines().find_map(|l| {
            l.strip_prefix(name)
                .and_then(|r| r.strip_prefix(':'))
                .map(|v| v.trim().to_string())
        })
    };
    let expects_continue = header("expect").is_some_and(|v| v.contains("100-continue"));
    let mut body_left = header("content-length")
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    body_left = body_left
        .saturating_sub((head.len() - end) as u64)
        .min(64 << 20);
    while body_left > 0 && !expects_continue {
        match client.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => body_left = body_left.saturating_sub(n as u64),
        }
    }
    let body = "{\"errors\":[{\"code\":\"UNKNOWN\",\"message\":\"injected fault\"}]}";
    let _ = client.write_all(
        format!(
            "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    let _ = client.shutdown(Shutdown::Write);
    // Drain what the client still sends so closing does not turn into a reset.
    let _ = client.set_read_timeout(Some(Duration::from_millis(200)));
    let deadline = Instant::now() + Duration::from_secs(1);
    while Instant::now() < deadline {
        match client.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
}

/// Makes the socket's last close send RST (SO_LINGER on, timeout 0). Linux values.
fn reset(s: &TcpStream) {
    #[repr(C)]
    struct Linger {
        l_onoff: i32,
        l_linger: i32,
    }
    extern "C" {
        fn setsockopt(
            fd: i32,
            level: i32,
            name: i32,
            value: *const std::ffi::c_void,
            len: u32,
        ) -> i32;
    }
    const SOL_SOCKET: i32 = 1;
    const SO_LINGER: i32 = 13;
    let l = Linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: valid fd owned by `s`, pointer and length describe a live `struct linger`.
    unsafe {
        setsockopt(
            s.as_raw_fd(),
            SOL_SOCKET,
            SO_LINGER,
            (&raw const l).cast(),
            u32::try_from(std::mem::size_of::<Linger>()).unwrap(),
        );
    }
}
