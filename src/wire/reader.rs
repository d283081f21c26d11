//! A cursor over untrusted bytes whose every read is checked.

use super::{WireError, WireResult};

/// A cursor over a byte slice. All reads check the remaining length and return
/// [`WireError::Truncated`] instead of panicking.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// Bytes consumed so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Bytes not consumed yet.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// The bytes not consumed yet, without consuming them.
    pub fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }

    /// Takes `n` bytes.
    pub fn take(&mut self, n: usize, what: &'static str) -> WireResult<&'a [u8]> {
        if n > self.remaining() {
            return Err(WireError::Truncated {
                what,
                need: n,
                have: self.remaining(),
            });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// Takes everything that is left.
    pub fn take_rest(&mut self) -> &'a [u8] {
        let s = &self.buf[self.pos..];
        self.pos = self.buf.len();
        s
    }

    pub fn array<const N: usize>(&mut self, what: &'static str) -> WireResult<[u8; N]> {
        let s = self.take(N, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    pub fn u8(&mut self, what: &'static str) -> WireResult<u8> {
        Ok(self.take(1, what)?[0])
    }

    pub fn peek_u8(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    pub fn u16(&mut self, what: &'static str) -> WireResult<u16> {
        Ok(u16::from_be_bytes(self.array(what)?))
    }

    pub fn u32(&mut self, what: &'static str) -> WireResult<u32> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }

    pub fn u64(&mut self, what: &'static str) -> WireResult<u64> {
        Ok(u64::from_be_bytes(self.array(what)?))
    }

    /// Fails when bytes are left over.
    pub fn finish(&self, what: &'static str) -> WireResult<()> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(WireError::Trailing {
                what,
                count: self.remaining(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_reads_past_the_end() {
        let mut r = Reader::new(&[1, 2, 3]);
        assert_eq!(r.u16("x").unwrap(), 0x0102);
        assert_eq!(
            r.u16("field"),
            Err(WireError::Truncated {
                what: "field",
                need: 2,
                have: 1
            })
        );
        // A failed read consumes nothing.
        assert_eq!(r.u8("x").unwrap(), 3);
        assert!(r.finish("x").is_ok());
    }

    #[test]
    fn rejects_huge_take_without_overflow() {
        let mut r = Reader::new(&[0; 4]);
        assert!(r.take(usize::MAX, "x").is_err());
    }
}
