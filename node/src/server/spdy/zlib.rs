//! SPDY/3 header compression: one zlib stream per direction, primed with the
//! SPDY/3 dictionary, each header block ending at a sync-flush point.
//!
//! [`Inflater`] is a small RFC 1951 decoder (stored, fixed and dynamic
//! Huffman blocks) that keeps its history window across header blocks;
//! [`Deflater`] writes stored (uncompressed) blocks, which every zlib reader
//! accepts, so the node needs no compression library. Nothing here knows
//! about frames or streams.

use std::sync::OnceLock;

/// The longest back-reference a deflate stream may make.
const WINDOW: usize = 32 * 1024;
const MAX_BITS: usize = 15;
/// An empty, non-final stored block: what a sync flush appends.
const SYNC_FLUSH: [u8; 5] = [0x00, 0x00, 0x00, 0xff, 0xff];

/// A header block could not be decompressed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid compressed header block: {0}")]
pub struct InflateError(&'static str);

/// The SPDY/3 zlib dictionary (draft 3, section 2.6.10.1).
pub fn dictionary() -> &'static [u8] {
    static DICTIONARY: OnceLock<Vec<u8>> = OnceLock::new();
    DICTIONARY.get_or_init(|| {
        const WORDS: &[&str] = &[
            "options", "head", "post", "put", "delete", "trace", "accept", "accept-charset",
            "accept-encoding", "accept-language", "accept-ranges", "age", "allow", "authorization",
            "cache-control", "connection", "content-base", "content-encoding", "content-language",
            "content-length", "content-location", "content-md5", "content-range", "content-type",
            "date", "etag", "expect", "expires", "from", "host", "if-match", "if-modified-since",
            "if-none-match", "if-range", "if-unmodified-since", "last-modified", "location",
            "max-forwards", "pragma", "proxy-authenticate", "proxy-authorization", "range",
            "referer", "retry-after", "server", "te", "trailer", "transfer-encoding", "upgrade",
            "user-agent", "vary", "via", "warning", "www-authenticate", "method", "get", "status",
            "200 OK", "version", "HTTP/1.1", "url", "public", "set-cookie", "keep-alive", "origin",
        ];
        const TAIL: &str = concat!(
            "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505",
            "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request",
            "401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented",
            "503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 ",
            "Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,",
            "application/xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age=",
            "gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.",
        );
        let mut out = Vec::with_capacity(1423);
        for word in WORDS {
            out.extend_from_slice(&(word.len() as u32).to_be_bytes());
            out.extend_from_slice(word.as_bytes());
        }
        out.extend_from_slice(TAIL.as_bytes());
        out
    })
}

/// The zlib Adler-32 checksum.
pub fn adler32(data: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for chunk in data.chunks(5552) {
        for &byte in chunk {
            a += u32::from(byte);
            b += a;
        }
        a %= 65521;
        b %= 65521;
    }
    (b << 16) | a
}

/// The compressing side of one direction: stored blocks, the zlib header first.
pub struct Deflater {
    started: bool,
}

impl Default for Deflater {
    fn default() -> Self {
        Self::new()
    }
}

impl Deflater {
    pub fn new() -> Self {
        Deflater { started: false }
    }

    /// One header block as the next piece of the zlib stream, ending with a
    /// sync flush (an empty stored block) as zlib's `Z_SYNC_FLUSH` does: Go's
    /// reader hands out a stored block's bytes only at such a flush point.
    pub fn compress(&mut self, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(data.len() + 16);
        if !self.started {
            // CMF 0x78 (deflate, 32K window), FLG 0x20 (FDICT; 0x7820 % 31 == 0).
            out.extend_from_slice(&[0x78, 0x20]);
            out.extend_from_slice(&adler32(dictionary()).to_be_bytes());
            self.started = true;
        }
        for chunk in data.chunks(u16::MAX as usize) {
            let len = chunk.len() as u16;
            out.push(0x00); // BFINAL=0, BTYPE=00 (stored), padding to the byte boundary
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(&(!len).to_le_bytes());
            out.extend_from_slice(chunk);
        }
        out.extend_from_slice(&SYNC_FLUSH);
        out
    }
}

/// The decompressing side of one direction.
pub struct Inflater {
    /// Everything decoded so far (the dictionary first), trimmed to the window.
    history: Vec<u8>,
    started: bool,
    finished: bool,
}

impl Default for Inflater {
    fn default() -> Self {
        Self::new()
    }
}

impl Inflater {
    pub fn new() -> Self {
        Inflater {
            history: dictionary().to_vec(),
            started: false,
            finished: false,
        }
    }

    /// Decompresses one header block: complete deflate blocks up to a flush point.
    pub fn decompress(&mut self, input: &[u8]) -> Result<Vec<u8>, InflateError> {
        let mut bits = BitReader {
            data: input,
            pos: 0,
            buf: 0,
            count: 0,
        };
        if !self.started {
            let cmf = bits.byte()?;
            let flg = bits.byte()?;
            if cmf & 0x0f != 8 || ((u16::from(cmf) << 8) | u16::from(flg)) % 31 != 0 {
                return Err(InflateError("not a zlib stream"));
            }
            if flg & 0x20 != 0 {
                let id =
                    u32::from_be_bytes([bits.byte()?, bits.byte()?, bits.byte()?, bits.byte()?]);
                if id != adler32(dictionary()) {
                    return Err(InflateError("unknown preset dictionary"));
                }
            }
            self.started = true;
        }
        let start = self.history.len();
        while !self.finished && !bits.at_end() {
            self.finished = bits.bits(1)? == 1;
            match bits.bits(2)? {
                0 => self.stored(&mut bits)?,
                1 => self.codes(&mut bits, fixed_tables())?,
                2 => {
                    let tables = dynamic_tables(&mut bits)?;
                    self.codes(&mut bits, &tables)?;
                }
                _ => return Err(InflateError("reserved block type")),
            }
        }
        let out = self.history[start..].to_vec();
        if self.history.len() > 2 * WINDOW {
            self.history.drain(..self.history.len() - WINDOW);
        }
        Ok(out)
    }

    fn stored(&mut self, bits: &mut BitReader<'_>) -> Result<(), InflateError> {
        bits.align();
        let len = u16::from_le_bytes([bits.byte()?, bits.byte()?]);
        let nlen = u16::from_le_bytes([bits.byte()?, bits.byte()?]);
        if len != !nlen {
            return Err(InflateError("stored block length mismatch"));
        }
        let data = bits.take(len as usize)?;
        self.history.extend_from_slice(data);
        Ok(())
    }

    fn codes(
        &mut self,
        bits: &mut BitReader<'_>,
        (lit, dist): &(Huffman, Huffman),
    ) -> Result<(), InflateError> {
        const LEN_BASE: [u16; 29] = [
            3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99,
            115, 131, 163, 195, 227, 258,
        ];
        const LEN_EXTRA: [u8; 29] = [
            0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
        ];
        const DIST_BASE: [u16; 30] = [
            1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025,
            1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577,
        ];
        const DIST_EXTRA: [u8; 30] = [
            0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12,
            12, 13, 13,
        ];
        loop {
            let symbol = lit.decode(bits)? as usize;
            match symbol {
                0..=255 => self.history.push(symbol as u8),
                256 => return Ok(()),
                _ => {
                    let i = symbol - 257;
                    if i >= LEN_BASE.len() {
                        return Err(InflateError("invalid length code"));
                    }
                    let len = LEN_BASE[i] as usize + bits.bits(LEN_EXTRA[i])? as usize;
                    let d = dist.decode(bits)? as usize;
                    if d >= DIST_BASE.len() {
                        return Err(InflateError("invalid distance code"));
                    }
                    let distance = DIST_BASE[d] as usize + bits.bits(DIST_EXTRA[d])? as usize;
                    if distance > self.history.len() {
                        return Err(InflateError("distance too far back"));
                    }
                    let from = self.history.len() - distance;
                    for k in 0..len {
                        let byte = self.history[from + k];
                        self.history.push(byte);
                    }
                }
            }
        }
    }
}

/// Reads bits least-significant first, as deflate packs them.
struct BitReader<'a> {
    data: &'a [u8],
    pos: usize,
    buf: u32,
    count: u8,
}

impl BitReader<'_> {
    fn bits(&mut self, need: u8) -> Result<u32, InflateError> {
        while self.count < need {
            let byte = *self.data.get(self.pos).ok_or(InflateError("truncated"))?;
            self.pos += 1;
            self.buf |= u32::from(byte) << self.count;
            self.count += 8;
        }
        let value = self.buf & ((1u32 << need) - 1);
        self.buf >>= need;
        self.count -= need;
        Ok(value)
    }

    fn align(&mut self) {
        self.buf = 0;
        self.count = 0;
    }

    fn byte(&mut self) -> Result<u8, InflateError> {
        Ok(self.bits(8)? as u8)
    }

    fn take(&mut self, n: usize) -> Result<&[u8], InflateError> {
        self.align();
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.data.len())
            .ok_or(InflateError("truncated"))?;
        let out = &self.data[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    /// Whether only padding (after a flush) is left.
    fn at_end(&self) -> bool {
        self.pos >= self.data.len() && (self.count == 0 || self.buf == 0)
    }
}

/// A canonical Huffman code: how many codes of each length, symbols in code order.
struct Huffman {
    counts: [u16; MAX_BITS + 1],
    symbols: Vec<u16>,
}

impl Huffman {
    fn new(lengths: &[u8]) -> Result<Huffman, InflateError> {
        let mut counts = [0u16; MAX_BITS + 1];
        for &len in lengths {
            counts[len as usize] += 1;
        }
        let mut left: i32 = 1;
        for &count in &counts[1..] {
            left = (left << 1) - i32::from(count);
            if left < 0 {
                return Err(InflateError("over-subscribed code"));
            }
        }
        let mut offsets = [0u16; MAX_BITS + 2];
        for len in 1..=MAX_BITS {
            offsets[len + 1] = offsets[len] + counts[len];
        }
        let mut symbols = vec![0u16; lengths.len()];
        for (symbol, &len) in lengths.iter().enumerate() {
            if len != 0 {
                symbols[offsets[len as usize] as usize] = symbol as u16;
                offsets[len as usize] += 1;
            }
        }
        counts[0] = 0;
        Ok(Huffman { counts, symbols })
    }

    fn decode(&self, bits: &mut BitReader<'_>) -> Result<u16, InflateError> {
        let (mut code, mut first, mut index) = (0i32, 0i32, 0i32);
        for len in 1..=MAX_BITS {
            code |= bits.bits(1)? as i32;
            let count = i32::from(self.counts[len]);
            if code - first < count {
                return Ok(self.symbols[(index + code - first) as usize]);
            }
            index += count;
            first = (first + count) << 1;
            code <<= 1;
        }
        Err(InflateError("invalid Huffman code"))
    }
}

fn fixed_tables() -> &'static (Huffman, Huffman) {
    static FIXED: OnceLock<(Huffman, Huffman)> = OnceLock::new();
    FIXED.get_or_init(|| {
        let mut lit = [8u8; 288];
        lit[144..256].fill(9);
        lit[256..280].fill(7);
        let lit = Huffman::new(&lit).unwrap_or_else(|_| unreachable!("the fixed code is complete"));
        let dist =
            Huffman::new(&[5u8; 30]).unwrap_or_else(|_| unreachable!("the fixed code is complete"));
        (lit, dist)
    })
}

fn dynamic_tables(bits: &mut BitReader<'_>) -> Result<(Huffman, Huffman), InflateError> {
    const ORDER: [usize; 19] = [
        16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15,
    ];
    let nlen = bits.bits(5)? as usize + 257;
    let ndist = bits.bits(5)? as usize + 1;
    let ncode = bits.bits(4)? as usize + 4;
    if nlen > 286 || ndist > 30 {
        return Err(InflateError("bad code counts"));
    }
    let mut code_lengths = [0u8; 19];
    for &i in &ORDER[..ncode] {
        code_lengths[i] = bits.bits(3)? as u8;
    }
    let code = Huffman::new(&code_lengths)?;
    let mut lengths = Vec::with_capacity(nlen + ndist);
    while lengths.len() < nlen + ndist {
        let symbol = code.decode(bits)?;
        let (value, repeat) = match symbol {
            0..=15 => (symbol as u8, 1),
            16 => (
                *lengths
                    .last()
                    .ok_or(InflateError("repeat with no previous length"))?,
                3 + bits.bits(2)?,
            ),
            17 => (0, 3 + bits.bits(3)?),
            _ => (0, 11 + bits.bits(7)?),
        };
        if lengths.len() + repeat as usize > nlen + ndist {
            return Err(InflateError("too many lengths"));
        }
        lengths.extend(std::iter::repeat_n(value, repeat as usize));
    }
    if lengths[256] == 0 {
        return Err(InflateError("no end-of-block code"));
    }
    Ok((
        Huffman::new(&lengths[..nlen])?,
        Huffman::new(&lengths[nlen..])?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn dictionary_is_the_spdy3_one() {
        assert_eq!(dictionary().len(), 1423);
        assert_eq!(adler32(dictionary()), 0xe3c6_a7c2);
        assert!(dictionary().ends_with(b",*,enq=0."));
    }

    /// Three header blocks as zlib (level 9, SPDY dictionary, sync flush) writes them.
    #[test]
    fn inflates_zlib_header_blocks_across_flushes() {
        let mut inflater = Inflater::new();
        let first = inflater
            .decompress(&hex("78f9e3c6a7c202253a703a2b294a4dcc851625aca9a0808614cb45e01c6061606100a4398b20d198094ade8c0600000000ffff"))
            .unwrap();
        assert_eq!(first.len(), 61);
        assert_eq!(&first[..4], &[0, 0, 0, 3]);
        assert!(first.windows(5).any(|w| w == b"error"));
        let second = inflater
            .decompress(&hex("c2aa19540e2512d60b000000ffff"))
            .unwrap();
        assert_eq!(second.len(), 60);
        assert!(second.windows(4).any(|w| w == b"data"));
        let third = inflater
            .decompress(&hex("0211a0445c012cf3407989694f625232d01be9199959a3acc1c072747276717573f7f0f4f2f6f1f5f30f080c0a0e090d0b8f888c1a95419701000000ffff"))
            .unwrap();
        assert_eq!(third.len(), 718);
        assert_eq!(
            &third[..20],
            &hex("0000000100000006782d6c6f6e67000002bc6162")[..]
        );
    }

    #[test]
    fn stored_blocks_round_trip() {
        let (mut deflater, mut inflater) = (Deflater::new(), Inflater::new());
        let big: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
        for block in [&b"hello"[..], &[], &big, b"again"] {
            let compressed = deflater.compress(block);
            assert!(
                compressed.ends_with(&SYNC_FLUSH),
                "every block ends at a flush point"
            );
            assert_eq!(inflater.decompress(&compressed).unwrap(), block);
        }
    }

    #[test]
    fn rejects_garbage() {
        assert!(Inflater::new().decompress(&[0x12, 0x34]).is_err());
        let mut inflater = Inflater::new();
        let mut block = Deflater::new().compress(b"abc");
        block.truncate(block.len() - 1);
        assert!(inflater.decompress(&block).is_err());
    }
}
