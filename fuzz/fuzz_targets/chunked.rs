//! The streaming body decoder (`http1::BodyDecoder`): chunked above all, plus `Content-Length`
//! and read-until-close bodies.
//!
//! Input: one byte picks the body kind (mostly chunked), one byte the number of reads (1-8) and
//! one byte per read its share of the body; the rest is the body bytes as they arrive.
//!
//! Properties:
//! - never panics, and every `decode` call makes progress (no endless `Data(empty)`);
//! - the bytes fed in arbitrary reads give the same result as fed whole: the same body bytes,
//!   the same outcome (done / needs more / the same error), and, when done, the same bytes left
//!   for the next message;
//! - a `Content-Length` body yields exactly its length; nothing past a message's end is taken.

#![no_main]

use bytes::BytesMut;
use gatehouse_core::http1::{BodyDecoder, BodyError, BodyKind, Decoded};
use gatehouse_fuzz::Reader;
use libfuzzer_sys::fuzz_target;

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Done,
    NeedMore,
    Failed(BodyError),
}

/// Decodes what `buf` holds; returns the outcome, appending body bytes to `out`.
fn drain(d: &mut BodyDecoder, buf: &mut BytesMut, out: &mut Vec<u8>) -> Outcome {
    // Each step takes at least one byte or changes state; far more steps means no progress.
    for _ in 0..buf.len() * 2 + 16 {
        match d.decode(buf) {
            Ok(Decoded::Data(b)) => {
                assert!(!b.is_empty(), "Data(empty) returned");
                out.extend_from_slice(&b);
            }
            Ok(Decoded::NeedMore) => return Outcome::NeedMore,
            Ok(Decoded::Done) => {
                assert!(d.is_done());
                return Outcome::Done;
            }
            Err(e) => return Outcome::Failed(e),
        }
    }
    panic!("body decoder makes no progress");
}

fuzz_target!(|data: &[u8]| {
    let mut r = Reader::new(data);
    let kind = match r.u8() {
        0..=199 => BodyKind::Chunked,
        200..=229 => BodyKind::Length(u64::from(r.u16())),
        230..=239 => BodyKind::Empty,
        _ => BodyKind::UntilClose,
    };
    let reads = 1 + usize::from(r.u8() % 8);
    let shares: Vec<usize> = (0..reads).map(|_| usize::from(r.u8())).collect();
    let body = r.rest();

    // Whole.
    let mut whole = BodyDecoder::new(kind);
    let mut buf = BytesMut::from(body);
    let mut out_whole = Vec::new();
    let res_whole = drain(&mut whole, &mut buf, &mut out_whole);
    let left_whole = buf.to_vec();

    // In reads: each read's size proportional to its share, the last read takes the rest.
    let total_share: usize = shares.iter().sum::<usize>().max(1);
    let mut pieces = Vec::new();
    let mut at = 0;
    for (i, s) in shares.iter().enumerate() {
        let end = if i + 1 == reads { body.len() } else { (at + body.len() * s / total_share).min(body.len()) };
        pieces.push(&body[at..end]);
        at = end;
    }
    let mut split = BodyDecoder::new(kind);
    let mut buf = BytesMut::new();
    let mut out_split = Vec::new();
    let mut res_split = Outcome::NeedMore;
    let mut fed = 0;
    for p in &pieces {
        buf.extend_from_slice(p);
        fed += 1;
        res_split = drain(&mut split, &mut buf, &mut out_split);
        if res_split != Outcome::NeedMore {
            break;
        }
    }
    // After the end (or an error) the connection keeps the rest of what arrives.
    for p in &pieces[fed..] {
        buf.extend_from_slice(p);
    }
    let left_split = buf.to_vec();

    assert_eq!(
        res_whole,
        res_split,
        "whole vs in {reads} reads {:?}",
        pieces.iter().map(|p| p.len()).collect::<Vec<_>>()
    );
    assert_eq!(out_whole, out_split, "decoded body differs");
    if res_whole == Outcome::Done {
        assert_eq!(left_whole, left_split, "bytes after the body differ");
        if let BodyKind::Length(n) = kind {
            assert_eq!(out_whole.len() as u64, n);
        }
    }
    if kind == BodyKind::UntilClose {
        assert_eq!(out_whole, body);
    }
});
