//! Hostile input never panics: mutated and random bytes through the request parser, the response
//! parser, the body decoder and path normalisation. Deterministic (fixed seed), bounded in count,
//! so it runs in CI; a coverage-guided fuzzer would go further but needs a nightly toolchain.

use bytes::BytesMut;
use gatehouse_core::http1::{parse_request, parse_response, BodyDecoder, BodyKind, Decoded, HeadLimits};
use gatehouse_core::normalize::{is_normal_path, normalize_target};

const SEEDS: &[&[u8]] = &[
    b"GET /a/b?c=d HTTP/1.1\r\nHost: example.com\r\nX-A: 1\r\n\r\n",
    b"POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello",
    b"POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n0\r\nT: v\r\n\r\n",
    b"GET http://other.example/x/../y HTTP/1.1\r\nHost: h\r\nConnection: close, x-a\r\n\r\n",
    b"GET /%2e%2e/%61dmin//x/./y HTTP/1.0\r\n\r\n",
];

const RESPONSES: &[&[u8]] = &[
    b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    b"HTTP/1.0 204 No Content\r\nConnection: keep-alive\r\n\r\n",
];

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// A few random edits: flip, insert, delete, duplicate a slice, or insert an interesting byte.
fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    const INTERESTING: &[u8] = b"\r\n\0 \t:;,%/.\\\x7f\xff0123456789abcdefxX-+";
    let mut v = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let pos = rng.below(v.len() + 1);
        match rng.below(5) {
            0 if !v.is_empty() => {
                let p = pos.min(v.len() - 1);
                v[p] ^= 1 << rng.below(8);
            }
            1 => v.insert(pos, INTERESTING[rng.below(INTERESTING.len())]),
            2 if pos < v.len() => {
                v.remove(pos);
            }
            3 => {
                let end = (pos + rng.below(16)).min(v.len());
                let dup = v[pos.min(end)..end].to_vec();
                v.splice(pos..pos, dup);
            }
            _ => v.insert(pos, (rng.next() & 0xff) as u8),
        }
    }
    v
}

fn drain_body(kind: BodyKind, buf: &mut BytesMut) {
    let mut d = BodyDecoder::new(kind);
    for _ in 0..10_000 {
        match d.decode(buf) {
            Ok(Decoded::Data(_)) => {}
            Ok(Decoded::NeedMore) | Ok(Decoded::Done) | Err(_) => return,
        }
    }
    panic!("body decoder did not make progress");
}

#[test]
fn parsers_and_normaliser_survive_mutated_input() {
    let limits = HeadLimits { max_head: 8192, max_headers: 32, max_uri: 1024 };
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for i in 0..40_000 {
        let input = if i % 10 == 0 {
            (0..rng.below(300)).map(|_| (rng.next() & 0xff) as u8).collect()
        } else {
            let seed = SEEDS[rng.below(SEEDS.len())];
            mutate(&mut rng, seed)
        };
        // Requests, possibly split at a random point (incremental parsing).
        let split = rng.below(input.len() + 1);
        let mut buf = BytesMut::from(&input[..split]);
        if let Ok(None) = parse_request(&mut buf, limits) {
            buf.extend_from_slice(&input[split..]);
            if let Ok(Some(head)) = parse_request(&mut buf, limits) {
                let _ = normalize_target(&head.target);
                drain_body(head.body, &mut buf);
            }
        } else if let Ok(Some(head)) = parse_request(&mut BytesMut::from(&input[..]), limits) {
            let _ = normalize_target(&head.target);
        }
        // Paths on their own.
        let _ = is_normal_path(&input);
        let _ = normalize_target(&input);
        // Responses.
        let seed = RESPONSES[rng.below(RESPONSES.len())];
        let resp = mutate(&mut rng, seed);
        let mut rb = BytesMut::from(&resp[..]);
        if let Ok(Some(head)) = parse_response(&mut rb, 8192, rng.below(2) == 0) {
            drain_body(head.body, &mut rb);
        }
        // Raw bytes as chunked and length bodies.
        drain_body(BodyKind::Chunked, &mut BytesMut::from(&input[..]));
        drain_body(BodyKind::Length(rng.below(64) as u64), &mut BytesMut::from(&input[..]));
    }
}

/// Whatever the fast path accepts as already normal, the full normaliser leaves unchanged: the
/// two must never disagree about what is matched and forwarded.
#[test]
fn fast_path_never_disagrees_with_the_normaliser() {
    let mut rng = Rng(42);
    let alphabet = b"/a.b;%2e=~-_";
    for _ in 0..50_000 {
        let len = 1 + rng.below(12);
        let mut p = vec![b'/'];
        p.extend((0..len).map(|_| alphabet[rng.below(alphabet.len())]));
        if is_normal_path(&p) {
            let n = normalize_target(&p).expect("a normal path normalises");
            assert_eq!(n.path.as_bytes(), &p[..], "fast path accepted {:?}", String::from_utf8_lossy(&p));
        }
    }
}
