//! Memory after a burst of client connections (issue 13, "give memory back"): the real binary,
//! a real backend, a thousand client connections held open (half idle after one complete
//! request, half half-open inside a head), then closed while light traffic goes on. The
//! gateway's RSS must come back to near where it started. Before the allocator and buffer
//! changes, glibc kept the burst for good (10.4 → 30.5 → 30.6 MiB in this order;
//! docs/performance.md, "Memory after a burst of connections").

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use gatehouse_testkit::{free_port, Backend, Cfg, GatewayProcess};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const BIN: &str = env!("CARGO_BIN_EXE_gatehouse");
const BURST: usize = 1000;
/// What the process may keep of a burst once every connection is gone.
const KEPT_MIB: f64 = 4.0;

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kib / 1024.0
}

async fn get(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(b"GET /warm HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

// The burst's order matters to the allocator: each idle connection's request answered before
// the next connection opens (this test) interleaves request and connection memory, and with
// mimalloc's default purge delay the freed pages then stay resident (24.7 -> 39.4 -> 39.4 MiB);
// the heap itself is freed (valgrind massif). With `MIMALLOC_PURGE_DELAY=0`, which the binary
// sets for itself (main.rs, `with_allocator_defaults`), they are given back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_is_given_back_after_a_burst_of_connections() {
    let backend = Backend::named("b").await;
    let (port, admin) = (free_port(), free_port());
    let yaml = Cfg::new()
        .listen(&format!("127.0.0.1:{port}"))
        .admin_with(&format!("127.0.0.1:{admin}"), "")
        .upstream("backend", &[backend.url()])
        .route("all", "backend")
        .to_yaml();
    let admin_addr = SocketAddr::from(([127, 0, 0, 1], admin));
    let gw = tokio::task::spawn_blocking(move || GatewayProcess::spawn(BIN, &yaml, admin_addr)).await.expect("join");
    let (addr, pid) = (SocketAddr::from(([127, 0, 0, 1], port)), gw.child.id());
    for _ in 0..20 {
        assert!(get(addr).await.starts_with("HTTP/1.1 200"), "the gateway serves");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = rss_mib(pid);

    // One request at a time on the idle half: the upstream pool stays at one connection (a
    // thousand concurrent requests would fill it, and pooled upstream connections are kept
    // until their idle timeout by design).
    let mut conns = Vec::with_capacity(BURST);
    for i in 0..BURST {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        if i % 2 == 0 {
            s.write_all(b"GET /idle HTTP/1.1\r\nHost: x\r\n\r\n").await.expect("write");
            let mut buf = [0u8; 4096];
            let n =
                tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await.expect("answer").expect("read");
            assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&buf[..n]));
        } else {
            s.write_all(b"GET /half HTTP/1.1\r\nHost: x\r\nX-Partial: ").await.expect("write");
        }
        conns.push(s);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let during = rss_mib(pid);
    // The burst is real: the open connections cost memory (about 15 KiB each).
    assert!(during > before + 5.0, "{BURST} open connections: RSS {before:.1} -> {during:.1} MiB");

    drop(conns);
    // A gateway after a burst keeps serving, so the test does too (one request every 200 ms)
    // while it waits for the memory to come back.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut after = rss_mib(pid);
    while after > before + KEPT_MIB && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(get(addr).await.starts_with("HTTP/1.1 200"), "the gateway serves after the burst");
        after = rss_mib(pid);
    }
    eprintln!("RSS: {before:.1} MiB before, {during:.1} with {BURST} connections open, {after:.1} after they closed");
    assert!(
        after <= before + KEPT_MIB,
        "memory kept after the burst: RSS {before:.1} -> {during:.1} -> {after:.1} MiB (at most +{KEPT_MIB} MiB)"
    );
}
