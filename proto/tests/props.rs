//! Property tests (proptest, bounded; PROPTEST_CASES raises the count) for
//! what a peer sends: the tunnel's line reader and the WebSocket decoder
//! with the limits both ends apply.

use std::io::Cursor;

use proptest::prelude::*;
use proto::line::{BoundedLines, LineError};

fn lines_of(input: &[u8], max: usize) -> (Vec<String>, Option<String>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        // A small buffer, so lines span many reads.
        let reader = tokio::io::BufReader::with_capacity(7, input);
        let mut l = BoundedLines::new(reader, max);
        let mut out = Vec::new();
        loop {
            match l.next_line().await {
                Ok(Some(s)) => out.push(s),
                Ok(None) => return (out, None),
                Err(LineError::Io(e)) => panic!("reading a slice failed: {e}"),
                Err(e) => return (out, Some(e.to_string())),
            }
        }
    })
}

/// `n` cases, or PROPTEST_CASES when set (for long runs).
fn cases(n: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(n)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(2000)))]

    #[test]
    fn the_line_reader_never_returns_more_than_its_limit(
        input in proptest::collection::vec(any::<u8>(), 0..600),
        max in 0usize..64,
    ) {
        let (lines, _) = lines_of(&input, max);
        for l in &lines {
            prop_assert!(l.len() <= max, "{} > {max}", l.len());
        }
    }

    #[test]
    fn the_line_reader_returns_exactly_the_lines_within_the_limit(
        lines in proptest::collection::vec("[a-z{}\":, ]{0,40}", 0..20),
        max in 0usize..48,
    ) {
        let text = lines.iter().map(|l| format!("{l}\n")).collect::<String>();
        let (got, err) = lines_of(text.as_bytes(), max);
        match lines.iter().position(|l| l.len() > max) {
            None => {
                prop_assert_eq!(&got, &lines);
                prop_assert!(err.is_none());
            }
            Some(first_long) => {
                prop_assert_eq!(&got[..], &lines[..first_long]);
                prop_assert!(err.unwrap().contains("longer than"));
            }
        }
    }

    #[test]
    fn the_websocket_decoder_refuses_oversized_frames_and_never_panics(
        frames in proptest::collection::vec(
            (any::<u8>(), 0u64..(4 << 20), proptest::collection::vec(any::<u8>(), 0..64)),
            1..6,
        ),
        junk in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        // Client frames (masked) with any first byte, a claimed length up
        // to 4 MiB and a short real payload; then junk.
        let mut wire = Vec::new();
        for (b0, claimed, payload) in &frames {
            wire.push(*b0);
            match *claimed {
                n if n < 126 => wire.push(0x80 | n as u8),
                n if n < 65_536 => {
                    wire.push(0x80 | 126);
                    wire.extend_from_slice(&(n as u16).to_be_bytes());
                }
                n => {
                    wire.push(0x80 | 127);
                    wire.extend_from_slice(&n.to_be_bytes());
                }
            }
            wire.extend_from_slice(&[1, 2, 3, 4]);
            wire.extend_from_slice(payload);
        }
        wire.extend_from_slice(&junk);
        let mut ws = tungstenite::WebSocket::from_raw_socket(
            Cursor::new(wire),
            tungstenite::protocol::Role::Server,
            Some(proto::ws::config()),
        );
        for _ in 0..16 {
            match ws.read() {
                Ok(m) => prop_assert!(m.len() <= proto::ws::MAX_MESSAGE_BYTES),
                Err(_) => break,
            }
        }
    }
}
