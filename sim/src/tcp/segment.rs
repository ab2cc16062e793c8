//! TCP segments and their wire form: a real TCP header (RFC 9293) with the
//! MSS and window-scale options on SYNs, so what travels between simulated
//! hosts is what the capture shows Wireshark.

use std::fmt;

/// FIN flag.
pub const FIN: u8 = 0x01;
/// SYN flag.
pub const SYN: u8 = 0x02;
/// RST flag.
pub const RST: u8 = 0x04;
/// PSH flag.
pub const PSH: u8 = 0x08;
/// ACK flag.
pub const ACK: u8 = 0x10;

/// The window scale every simulated host offers and uses (Linux offers 7
/// with its default buffers).
pub const WSCALE: u8 = 7;

/// One TCP segment.
#[derive(Clone, PartialEq, Eq)]
pub struct Segment {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgement number (meaningful with [`ACK`]).
    pub ack: u32,
    /// Flags ([`SYN`], [`ACK`], ...).
    pub flags: u8,
    /// Receive window in bytes (already scaled).
    pub window: u32,
    /// The MSS option (SYN segments only).
    pub mss: Option<u16>,
    /// Payload.
    pub payload: Vec<u8>,
}

impl fmt::Debug for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut flags = String::new();
        for (bit, name) in [(SYN, "S"), (FIN, "F"), (RST, "R"), (PSH, "P"), (ACK, ".")] {
            if self.flags & bit != 0 {
                flags.push_str(name);
            }
        }
        write!(
            f,
            "{}>{} [{flags}] seq {} ack {} win {} len {}",
            self.src_port,
            self.dst_port,
            self.seq,
            self.ack,
            self.window,
            self.payload.len()
        )
    }
}

impl Segment {
    /// Whether `flag` is set.
    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    /// The sequence space it occupies: payload, plus one each for SYN and FIN.
    pub fn seq_len(&self) -> u32 {
        self.payload.len() as u32 + u32::from(self.has(SYN)) + u32::from(self.has(FIN))
    }

    /// The header and payload as on the wire, checksum left zero (the
    /// capture fills it in with the IP pseudo-header).
    pub fn encode(&self) -> Vec<u8> {
        let mut options = Vec::new();
        if let Some(mss) = self.mss {
            options.extend_from_slice(&[2, 4]);
            options.extend_from_slice(&mss.to_be_bytes());
            // NOP, window scale.
            options.extend_from_slice(&[1, 3, 3, WSCALE]);
        }
        let words = 5 + options.len() / 4;
        let mut b = Vec::with_capacity(words * 4 + self.payload.len());
        b.extend_from_slice(&self.src_port.to_be_bytes());
        b.extend_from_slice(&self.dst_port.to_be_bytes());
        b.extend_from_slice(&self.seq.to_be_bytes());
        b.extend_from_slice(&self.ack.to_be_bytes());
        b.push((words as u8) << 4);
        b.push(self.flags);
        // SYNs carry the unscaled window (RFC 7323); others are scaled.
        let win = if self.has(SYN) {
            self.window.min(65_535)
        } else {
            (self.window >> WSCALE).min(65_535)
        };
        b.extend_from_slice(&(win as u16).to_be_bytes());
        b.extend_from_slice(&[0, 0, 0, 0]);
        b.extend_from_slice(&options);
        b.extend_from_slice(&self.payload);
        b
    }

    /// Parses what [`Segment::encode`] wrote (any valid TCP header; unknown
    /// options are skipped). `None` for a malformed segment.
    pub fn decode(b: &[u8]) -> Option<Segment> {
        if b.len() < 20 {
            return None;
        }
        let be16 = |i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
        let be32 = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let header = usize::from(b[12] >> 4) * 4;
        if header < 20 || header > b.len() {
            return None;
        }
        let flags = b[13];
        let raw_win = u32::from(be16(14));
        let mut mss = None;
        let mut i = 20;
        while i < header {
            match b[i] {
                0 => break,
                1 => i += 1,
                kind => {
                    let len = usize::from(*b.get(i + 1)?);
                    if len < 2 || i + len > header {
                        return None;
                    }
                    if kind == 2 && len == 4 {
                        mss = Some(be16(i + 2));
                    }
                    i += len;
                }
            }
        }
        Some(Segment {
            src_port: be16(0),
            dst_port: be16(2),
            seq: be32(4),
            ack: be32(8),
            flags,
            window: if flags & SYN != 0 {
                raw_win
            } else {
                raw_win << WSCALE
            },
            mss,
            payload: b[header..].to_vec(),
        })
    }
}

/// `a < b` in sequence space.
pub fn lt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

/// `a <= b` in sequence space.
pub fn le(a: u32, b: u32) -> bool {
    a == b || lt(a, b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_syn_with_options_and_a_data_segment_round_trip() {
        let syn = Segment {
            src_port: 40000,
            dst_port: 8443,
            seq: 7,
            ack: 0,
            flags: SYN,
            window: 64_240,
            mss: Some(1460),
            payload: Vec::new(),
        };
        let wire = syn.encode();
        assert_eq!(wire.len(), 28, "20 bytes + MSS + NOP + wscale");
        assert_eq!(Segment::decode(&wire), Some(syn));
        let data = Segment {
            src_port: 8443,
            dst_port: 40000,
            seq: u32::MAX - 2,
            ack: 8,
            flags: ACK | PSH,
            window: 128 << WSCALE,
            mss: None,
            payload: b"hello".to_vec(),
        };
        assert_eq!(Segment::decode(&data.encode()), Some(data.clone()));
        assert_eq!(data.seq_len(), 5);
        assert!(Segment::decode(&[0; 19]).is_none());
        let mut bad = data.encode();
        bad[12] = 15 << 4; // header longer than the segment
        assert!(Segment::decode(&bad).is_none());
    }

    #[test]
    fn sequence_comparisons_wrap() {
        assert!(lt(u32::MAX, 0));
        assert!(lt(1, 2));
        assert!(!lt(2, 2));
        assert!(le(2, 2));
        assert!(lt(u32::MAX - 10, 5));
    }
}
