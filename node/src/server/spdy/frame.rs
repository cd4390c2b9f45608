//! SPDY/3.1 framing: the frame types, their wire encoding, and the
//! name/value header block inside SYN_STREAM, SYN_REPLY and HEADERS.
//! Header blocks travel compressed; `zlib.rs` does that, the session
//! (`session.rs`) keeps the compression contexts. No I/O here.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// The protocol version every control frame carries.
pub const VERSION: u16 = 3;
/// DATA flag (and SYN_STREAM/SYN_REPLY flag): the sender is done with the stream.
pub const FLAG_FIN: u8 = 0x01;
/// The largest payload a frame's 24-bit length allows.
pub const MAX_PAYLOAD: usize = 0x00ff_ffff;

/// RST_STREAM status codes.
pub const PROTOCOL_ERROR: u32 = 1;
pub const INVALID_STREAM: u32 = 2;
pub const REFUSED_STREAM: u32 = 3;

const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const SETTINGS: u16 = 4;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const HEADERS: u16 = 8;
const WINDOW_UPDATE: u16 = 9;

/// One SPDY frame; header blocks are the compressed bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    SynStream {
        stream_id: u32,
        associated_id: u32,
        priority: u8,
        flags: u8,
        headers: Bytes,
    },
    SynReply {
        stream_id: u32,
        flags: u8,
        headers: Bytes,
    },
    RstStream {
        stream_id: u32,
        status: u32,
    },
    Settings {
        flags: u8,
        entries: Vec<Setting>,
    },
    Ping {
        id: u32,
    },
    GoAway {
        last_good_stream_id: u32,
        status: u32,
    },
    Headers {
        stream_id: u32,
        flags: u8,
        headers: Bytes,
    },
    WindowUpdate {
        stream_id: u32,
        delta: u32,
    },
    Data {
        stream_id: u32,
        flags: u8,
        data: Bytes,
    },
    /// A control frame of a type this node does not use (NOOP, CREDENTIAL).
    Other {
        kind: u16,
        flags: u8,
        payload: Bytes,
    },
}

/// One SETTINGS entry: flags, id, value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    pub flags: u8,
    pub id: u32,
    pub value: u32,
}

/// The peer sent bytes that are not SPDY/3.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("unsupported SPDY version {0}")]
    Version(u16),
    #[error("malformed {0} frame")]
    Malformed(&'static str),
    #[error("malformed header block")]
    HeaderBlock,
}

impl Frame {
    /// Appends the frame's wire form to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        let mut payload = BytesMut::new();
        let (kind, flags) = match self {
            Frame::Data {
                stream_id,
                flags,
                data,
            } => {
                debug_assert!(data.len() <= MAX_PAYLOAD);
                out.put_u32(stream_id & 0x7fff_ffff);
                out.put_u32(u32::from(*flags) << 24 | data.len() as u32);
                out.put_slice(data);
                return;
            }
            Frame::SynStream {
                stream_id,
                associated_id,
                priority,
                flags,
                headers,
            } => {
                payload.put_u32(stream_id & 0x7fff_ffff);
                payload.put_u32(associated_id & 0x7fff_ffff);
                payload.put_u8(priority << 5);
                payload.put_u8(0); // slot
                payload.put_slice(headers);
                (SYN_STREAM, *flags)
            }
            Frame::SynReply {
                stream_id,
                flags,
                headers,
            } => {
                payload.put_u32(stream_id & 0x7fff_ffff);
                payload.put_slice(headers);
                (SYN_REPLY, *flags)
            }
            Frame::RstStream { stream_id, status } => {
                payload.put_u32(stream_id & 0x7fff_ffff);
                payload.put_u32(*status);
                (RST_STREAM, 0)
            }
            Frame::Settings { flags, entries } => {
                payload.put_u32(entries.len() as u32);
                for e in entries {
                    payload.put_u32(u32::from(e.flags) << 24 | (e.id & 0x00ff_ffff));
                    payload.put_u32(e.value);
                }
                (SETTINGS, *flags)
            }
            Frame::Ping { id } => {
                payload.put_u32(*id);
                (PING, 0)
            }
            Frame::GoAway {
                last_good_stream_id,
                status,
            } => {
                payload.put_u32(last_good_stream_id & 0x7fff_ffff);
                payload.put_u32(*status);
                (GOAWAY, 0)
            }
            Frame::Headers {
                stream_id,
                flags,
                headers,
            } => {
                payload.put_u32(stream_id & 0x7fff_ffff);
                payload.put_slice(headers);
                (HEADERS, *flags)
            }
            Frame::WindowUpdate { stream_id, delta } => {
                payload.put_u32(stream_id & 0x7fff_ffff);
                payload.put_u32(delta & 0x7fff_ffff);
                (WINDOW_UPDATE, 0)
            }
            Frame::Other {
                kind,
                flags,
                payload: p,
            } => {
                payload.put_slice(p);
                (*kind, *flags)
            }
        };
        out.put_u16(0x8000 | VERSION);
        out.put_u16(kind);
        out.put_u32(u32::from(flags) << 24 | payload.len() as u32);
        out.put_slice(&payload);
    }

    /// Takes one whole frame off the front of `buf`; `None` while more bytes are needed.
    pub fn decode(buf: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        if buf.len() < 8 {
            return Ok(None);
        }
        let len = (u32::from_be_bytes([0, buf[5], buf[6], buf[7]])) as usize;
        if buf.len() < 8 + len {
            return Ok(None);
        }
        let mut head = buf.split_to(8);
        let mut p = buf.split_to(len).freeze();
        let first = head.get_u32();
        let flags = head.get_u8();
        if first & 0x8000_0000 == 0 {
            return Ok(Some(Frame::Data {
                stream_id: first & 0x7fff_ffff,
                flags,
                data: p,
            }));
        }
        let version = ((first >> 16) & 0x7fff) as u16;
        if version != VERSION {
            return Err(FrameError::Version(version));
        }
        let kind = (first & 0xffff) as u16;
        let need = |p: &Bytes, n: usize, what: &'static str| {
            if p.len() < n {
                Err(FrameError::Malformed(what))
            } else {
                Ok(())
            }
        };
        let frame = match kind {
            SYN_STREAM => {
                need(&p, 10, "SYN_STREAM")?;
                let stream_id = p.get_u32() & 0x7fff_ffff;
                let associated_id = p.get_u32() & 0x7fff_ffff;
                let priority = p.get_u8() >> 5;
                p.advance(1);
                Frame::SynStream {
                    stream_id,
                    associated_id,
                    priority,
                    flags,
                    headers: p,
                }
            }
            SYN_REPLY => {
                need(&p, 4, "SYN_REPLY")?;
                Frame::SynReply {
                    stream_id: p.get_u32() & 0x7fff_ffff,
                    flags,
                    headers: p,
                }
            }
            RST_STREAM => {
                need(&p, 8, "RST_STREAM")?;
                Frame::RstStream {
                    stream_id: p.get_u32() & 0x7fff_ffff,
                    status: p.get_u32(),
                }
            }
            SETTINGS => {
                need(&p, 4, "SETTINGS")?;
                let n = p.get_u32() as usize;
                need(&p, n.saturating_mul(8), "SETTINGS")?;
                let entries = (0..n)
                    .map(|_| {
                        let head = p.get_u32();
                        Setting {
                            flags: (head >> 24) as u8,
                            id: head & 0x00ff_ffff,
                            value: p.get_u32(),
                        }
                    })
                    .collect();
                Frame::Settings { flags, entries }
            }
            PING => {
                need(&p, 4, "PING")?;
                Frame::Ping { id: p.get_u32() }
            }
            GOAWAY => {
                need(&p, 4, "GOAWAY")?;
                let last_good_stream_id = p.get_u32() & 0x7fff_ffff;
                // SPDY/2 peers omit the status.
                let status = if p.len() >= 4 { p.get_u32() } else { 0 };
                Frame::GoAway {
                    last_good_stream_id,
                    status,
                }
            }
            HEADERS => {
                need(&p, 4, "HEADERS")?;
                Frame::Headers {
                    stream_id: p.get_u32() & 0x7fff_ffff,
                    flags,
                    headers: p,
                }
            }
            WINDOW_UPDATE => {
                need(&p, 8, "WINDOW_UPDATE")?;
                Frame::WindowUpdate {
                    stream_id: p.get_u32() & 0x7fff_ffff,
                    delta: p.get_u32() & 0x7fff_ffff,
                }
            }
            kind => Frame::Other {
                kind,
                flags,
                payload: p,
            },
        };
        Ok(Some(frame))
    }
}

/// Name/value pairs as one uncompressed header block (names lowercased).
pub fn encode_headers(headers: &[(String, String)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(headers.len() as u32).to_be_bytes());
    for (name, value) in headers {
        let name = name.to_ascii_lowercase();
        out.extend_from_slice(&(name.len() as u32).to_be_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&(value.len() as u32).to_be_bytes());
        out.extend_from_slice(value.as_bytes());
    }
    out
}

/// An uncompressed header block's pairs; a value with NULs is kept as one string.
pub fn decode_headers(block: &[u8]) -> Result<Vec<(String, String)>, FrameError> {
    let mut p = block;
    let word = |p: &mut &[u8]| -> Result<String, FrameError> {
        if p.len() < 4 {
            return Err(FrameError::HeaderBlock);
        }
        let n = p.get_u32() as usize;
        if p.len() < n {
            return Err(FrameError::HeaderBlock);
        }
        let s = String::from_utf8_lossy(&p[..n]).into_owned();
        p.advance(n);
        Ok(s)
    };
    if p.len() < 4 {
        return Err(FrameError::HeaderBlock);
    }
    let count = p.get_u32() as usize;
    let mut out = Vec::with_capacity(count.min(64));
    for _ in 0..count {
        let name = word(&mut p)?;
        let value = word(&mut p)?;
        out.push((name.to_ascii_lowercase(), value));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CANCEL: u32 = 5;

    fn round_trip(frame: Frame) {
        let mut buf = BytesMut::new();
        frame.encode(&mut buf);
        let whole = buf.clone();
        // Every strict prefix is "need more"; the whole frame decodes back.
        for cut in 0..whole.len() {
            let mut part = BytesMut::from(&whole[..cut]);
            assert_eq!(
                Frame::decode(&mut part).unwrap(),
                None,
                "prefix {cut} of {frame:?}"
            );
        }
        buf.extend_from_slice(b"\x00\x00\x00\x01"); // the start of a following frame stays
        assert_eq!(Frame::decode(&mut buf).unwrap(), Some(frame));
        assert_eq!(&buf[..], b"\x00\x00\x00\x01");
    }

    #[test]
    fn frames_round_trip() {
        let headers = Bytes::from_static(b"\x78\x20compressed");
        round_trip(Frame::SynStream {
            stream_id: 5,
            associated_id: 0,
            priority: 3,
            flags: FLAG_FIN,
            headers: headers.clone(),
        });
        round_trip(Frame::SynReply {
            stream_id: 5,
            flags: 0,
            headers: headers.clone(),
        });
        round_trip(Frame::RstStream {
            stream_id: 7,
            status: CANCEL,
        });
        round_trip(Frame::Settings {
            flags: 1,
            entries: vec![
                Setting {
                    flags: 0,
                    id: 7,
                    value: 65536,
                },
                Setting {
                    flags: 1,
                    id: 4,
                    value: 100,
                },
            ],
        });
        round_trip(Frame::Ping { id: 1 });
        round_trip(Frame::GoAway {
            last_good_stream_id: 9,
            status: 0,
        });
        round_trip(Frame::Headers {
            stream_id: 3,
            flags: 0,
            headers,
        });
        round_trip(Frame::WindowUpdate {
            stream_id: 3,
            delta: 4096,
        });
        round_trip(Frame::Data {
            stream_id: 3,
            flags: FLAG_FIN,
            data: Bytes::from_static(b"hello"),
        });
        round_trip(Frame::Data {
            stream_id: 1,
            flags: 0,
            data: Bytes::new(),
        });
        round_trip(Frame::Other {
            kind: 10,
            flags: 0,
            payload: Bytes::from_static(b"x"),
        });
    }

    #[test]
    fn wire_form_matches_the_spec() {
        let mut buf = BytesMut::new();
        Frame::Ping { id: 1 }.encode(&mut buf);
        assert_eq!(&buf[..], &[0x80, 0x03, 0x00, 0x06, 0, 0, 0, 4, 0, 0, 0, 1]);
        let mut buf = BytesMut::new();
        Frame::Data {
            stream_id: 3,
            flags: FLAG_FIN,
            data: Bytes::from_static(b"ab"),
        }
        .encode(&mut buf);
        assert_eq!(&buf[..], &[0, 0, 0, 3, 1, 0, 0, 2, b'a', b'b']);
    }

    #[test]
    fn rejects_other_versions_and_short_frames() {
        let mut buf = BytesMut::from(&[0x80, 0x02, 0x00, 0x06, 0, 0, 0, 4, 0, 0, 0, 1][..]);
        assert_eq!(Frame::decode(&mut buf), Err(FrameError::Version(2)));
        let mut buf = BytesMut::from(&[0x80, 0x03, 0x00, 0x03, 0, 0, 0, 2, 0, 0][..]);
        assert_eq!(
            Frame::decode(&mut buf),
            Err(FrameError::Malformed("RST_STREAM"))
        );
    }

    #[test]
    fn header_blocks_round_trip() {
        let pairs = vec![
            ("StreamType".to_string(), "error".to_string()),
            ("port".into(), "8080".into()),
            ("requestid".into(), "0".into()),
        ];
        let decoded = decode_headers(&encode_headers(&pairs)).unwrap();
        assert_eq!(decoded[0], ("streamtype".to_string(), "error".to_string()));
        assert_eq!(decoded[1..], pairs[1..]);
        assert_eq!(decode_headers(&encode_headers(&[])).unwrap(), vec![]);
        assert_eq!(
            decode_headers(&[0, 0, 0, 1, 0, 0, 0, 9, b'x']),
            Err(FrameError::HeaderBlock)
        );
    }

    #[test]
    fn compressed_header_blocks_round_trip() {
        use super::super::zlib::{Deflater, Inflater};
        let (mut deflater, mut inflater) = (Deflater::new(), Inflater::new());
        for pairs in [
            vec![("streamtype".to_string(), "stdout".to_string())],
            vec![],
        ] {
            let wire = deflater.compress(&encode_headers(&pairs));
            assert_eq!(
                decode_headers(&inflater.decompress(&wire).unwrap()).unwrap(),
                pairs
            );
        }
    }
}
