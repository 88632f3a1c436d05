//! The vendored mail-parser's fast MIME base64 decoder (vendor/mail-parser, README-mailroom.md)
//! against the original one it replaces, kept verbatim as
//! `mail_parser::decoders::base64::original::decode_base64_mime`: on every input both must give
//! the same end position, the same bytes (and the same kind of `Cow`), and leave the stream at the
//! same place. Inputs are generated (seeded, so a failure repeats): encoded bodies with CRLF, LF
//! or bare CR lines of many lengths, then '=' in odd places, whitespace, invalid bytes, '-' runs,
//! boundaries whole, partial, wrong or absent, truncation, a header before the body. Plus every
//! short string over the characters the decoder treats specially, alone and between groups.
//!
//!     cargo test --test base64_mime
//!
//! The decode speed of both (no assertion on it; run in release to mean anything):
//!
//!     cargo test --release --test base64_mime -- --ignored --nocapture

use std::borrow::Cow;
use std::time::Instant;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use mail_parser::decoders::base64::original;
use mail_parser::parsers::MessageStream;

/// What a decode leaves behind: end position, bytes, whether borrowed (the failure value), and
/// the stream's offset plus everything it still yields.
type Outcome = (usize, Vec<u8>, bool, usize, Vec<u8>);

fn run(input: &[u8], skip: usize, peek: bool, boundary: &[u8], fast: bool) -> Outcome {
    let mut stream = MessageStream::new(input);
    for _ in 0..skip {
        stream.next();
    }
    if peek {
        stream.peek();
    }
    let (end, bytes) =
        if fast { stream.decode_base64_mime(boundary) } else { original::decode_base64_mime(&mut stream, boundary) };
    let borrowed = matches!(bytes, Cow::Borrowed(_));
    let offset = stream.offset();
    let rest: Vec<u8> = stream.by_ref().copied().collect();
    (end, bytes.into_owned(), borrowed, offset, rest)
}

fn check(input: &[u8], skip: usize, peek: bool, boundary: &[u8]) -> bool {
    let old = run(input, skip, peek, boundary, false);
    let new = run(input, skip, peek, boundary, true);
    assert_eq!(
        new,
        old,
        "fast and original decoders differ on {:?} (skip {skip}, peek {peek}, boundary {:?})",
        String::from_utf8_lossy(input),
        String::from_utf8_lossy(boundary)
    );
    old.0 != usize::MAX
}

const BOUNDARY: &[u8] = b"boundary";

const LINE_ENDS: [&[u8]; 5] = [b"\r\n", b"\n", b"\r", b" \r\n", b"\t\n"];

const ENDINGS: [&[u8]; 16] = [
    b"\r\n--boundary\r\n",
    b"\r\n--boundary--\r\n",
    b"\n--boundary\n",
    b"\n--boundary--",
    b"--boundary",
    b"\r\n\r\n--boundary\r\n",
    b" \r\n--boundary \r\n",
    b"\r\n--bound",
    b"\r\n--boundarx\r\n",
    b"\r\n--other\r\n",
    b"\r\n-\r\n--boundary\r\n",
    b"\r\n---boundary\r\n",
    b"=\r\n--boundary\r\n",
    b"\r\n",
    b"",
    b"\r\n--boundary",
];

/// Characters the per-byte loop treats one by one, and a few it rejects.
const SPECIAL: [u8; 14] = [b'=', b'-', b' ', b'\t', b'\r', b'\n', b'!', b'.', 0, 0x80, 0xff, b'A', b'/', b'+'];

fn encoded_body(rng: &mut fastrand::Rng) -> Vec<u8> {
    let len = match rng.u8(0..10) {
        0 => rng.usize(0..8),
        1..=6 => rng.usize(0..700),
        7 | 8 => rng.usize(700..3000),
        _ => rng.usize(3000..20_000),
    };
    let mut raw = vec![0u8; len];
    rng.fill(&mut raw);
    let text = STANDARD.encode(&raw).into_bytes();

    // Lines of one length (the usual 76, others, not a multiple of 4) or of random lengths.
    let fixed = match rng.u8(0..8) {
        0..=2 => Some(76),
        3 => Some(*[72, 64, 60, 4, 8].get(rng.usize(0..5)).unwrap_or(&76)),
        4 | 5 => Some(rng.usize(1..130)),
        _ => None,
    };
    let line_end = if rng.u8(0..10) == 0 { None } else { Some(LINE_ENDS[rng.usize(0..2)]) };
    let mut out = Vec::with_capacity(text.len() * 2);
    let mut rest = &text[..];
    while !rest.is_empty() {
        let take = fixed.unwrap_or_else(|| rng.usize(1..100)).min(rest.len());
        out.extend_from_slice(&rest[..take]);
        rest = &rest[take..];
        if !rest.is_empty() || rng.bool() {
            out.extend_from_slice(line_end.unwrap_or_else(|| LINE_ENDS[rng.usize(..LINE_ENDS.len())]));
        }
    }
    out
}

fn mutate(rng: &mut fastrand::Rng, body: &mut Vec<u8>) {
    let edits = match rng.u8(0..4) {
        0 => 0,
        1 | 2 => rng.usize(1..3),
        _ => rng.usize(3..12),
    };
    for _ in 0..edits {
        let at = rng.usize(0..=body.len());
        match rng.u8(0..8) {
            0 => body.insert(at, b'='),
            1 => body.splice(at..at, b"==".iter().copied()).for_each(drop),
            2 => body.splice(at..at, std::iter::repeat_n(b'-', rng.usize(1..4))).for_each(drop),
            3 => body.insert(at, SPECIAL[rng.usize(..SPECIAL.len())]),
            4 => body.insert(at, rng.u8(..)),
            5 if at < body.len() => {
                body.remove(at);
            }
            6 if at < body.len() => body[at] = SPECIAL[rng.usize(..SPECIAL.len())],
            _ => body.splice(at..at, b"\r\n--boundary\r\n".iter().copied()).for_each(drop),
        }
    }
}

#[test]
fn fast_decoder_matches_the_original_on_generated_bodies() {
    let mut rng = fastrand::Rng::with_seed(0x6d61_696c_726f_6f6d);
    let (mut cases, mut decoded) = (0, 0);
    for _ in 0..6000 {
        let mut body = encoded_body(&mut rng);
        mutate(&mut rng, &mut body);
        body.extend_from_slice(ENDINGS[rng.usize(..ENDINGS.len())]);
        if rng.u8(0..8) == 0 {
            body.truncate(rng.usize(0..=body.len()));
        }
        if rng.u8(0..4) == 0 {
            body.extend_from_slice(b"trailing text, another part\r\n--boundary--\r\n");
        }
        // A header before the body, consumed before decoding starts (the parser's position).
        let header: &[u8] = if rng.bool() { b"" } else { b"Content-Transfer-Encoding: base64\r\n\r\n" };
        let input = [header, &body].concat();
        let peek = rng.bool();
        for boundary in [BOUNDARY, b"", b"b"] {
            cases += 1;
            decoded += usize::from(check(&input, header.len(), peek, boundary));
        }
    }
    // The generator must reach both outcomes often, or it proves little.
    assert!(decoded > cases / 4 && decoded < cases * 3 / 4, "{decoded} of {cases} inputs decoded");
}

#[test]
fn fast_decoder_matches_the_original_on_every_short_string_of_special_characters() {
    let mut count = 0;
    let mut short = Vec::new();
    for len in 0..=4u32 {
        for mut n in 0..SPECIAL.len().pow(len) {
            short.clear();
            for _ in 0..len {
                short.push(SPECIAL[n % SPECIAL.len()]);
                n /= SPECIAL.len();
            }
            // Alone, right after whole groups (the fast path hands over), and between groups.
            for (before, after) in [(&b""[..], &b""[..]), (b"QUJDREVG", b""), (b"QUJD", b"REVGR0hJ"), (b"QUI", b"RE")] {
                for ending in [&b""[..], b"\r\n--boundary\r\n", b"--boundary", b"\n--bound"] {
                    let input = [before, &short, after, ending].concat();
                    check(&input, 0, false, BOUNDARY);
                    check(&input, 0, false, b"");
                    count += 2;
                }
            }
        }
    }
    assert!(count > 400_000, "{count} cases");
}

#[test]
fn fast_decoder_decodes_a_wrapped_attachment() {
    let raw: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
    let mut body = Vec::new();
    for line in STANDARD.encode(&raw).as_bytes().chunks(76) {
        body.extend_from_slice(line);
        body.extend_from_slice(b"\r\n");
    }
    let input = [&body[..], b"--boundary--\r\n"].concat();
    let mut stream = MessageStream::new(&input);
    let (end, bytes) = stream.decode_base64_mime(BOUNDARY);
    assert_eq!(bytes, raw);
    // The part ends before the line break that precedes the boundary.
    assert_eq!(end, body.len() - 2);
    assert!(check(&input, 0, false, BOUNDARY), "the original decodes it too");
}

/// Decode speed of both decoders on 8 MiB of random bytes as 76-column CRLF lines (a typical
/// PDF attachment), in MB of base64 text per second: the median and the best of 15 decodes (the
/// best is the least disturbed by other work on the machine). Prints; asserts only that both
/// decode everything.
#[test]
#[ignore = "a measurement, not a test: run in release with --ignored --nocapture"]
fn decode_throughput() {
    let mut rng = fastrand::Rng::with_seed(7);
    let mut raw = vec![0u8; 8 << 20];
    rng.fill(&mut raw);
    let mut input = Vec::new();
    for line in STANDARD.encode(&raw).as_bytes().chunks(76) {
        input.extend_from_slice(line);
        input.extend_from_slice(b"\r\n");
    }
    input.extend_from_slice(b"--boundary--\r\n");
    let mb = input.len() as f64 / 1e6;
    for fast in [false, true] {
        let mut secs: Vec<f64> = (0..15)
            .map(|_| {
                let started = Instant::now();
                let mut stream = MessageStream::new(&input);
                let (_, bytes) = if fast {
                    stream.decode_base64_mime(BOUNDARY)
                } else {
                    original::decode_base64_mime(&mut stream, BOUNDARY)
                };
                assert_eq!(bytes.len(), raw.len());
                started.elapsed().as_secs_f64()
            })
            .collect();
        secs.sort_by(f64::total_cmp);
        let name = if fast { "fast" } else { "original" };
        println!("{name:8} {mb:.1} MB: median {:5.0} MB/s, best {:5.0} MB/s", mb / secs[7], mb / secs[0]);
    }
}
