//! A bounds-checked little-endian reader over the header bytes. Every read either succeeds or
//! reports how many bytes it needed and how many were left; nothing here can index out of bounds
//! or allocate more than the bytes it returns.

/// A read that ran past the end: position, bytes wanted, bytes left.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Short {
    pub at: u64,
    pub need: u64,
    pub have: u64,
}

pub(crate) struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Cursor { bytes, pos: 0 }
    }

    pub fn pos(&self) -> u64 {
        self.pos as u64
    }

    pub fn remaining(&self) -> u64 {
        (self.bytes.len() - self.pos) as u64
    }

    /// The next `n` bytes, or `Short` without moving.
    pub fn take(&mut self, n: u64) -> Result<&'a [u8], Short> {
        let short = Short {
            at: self.pos(),
            need: n,
            have: self.remaining(),
        };
        let n = usize::try_from(n).map_err(|_| short)?;
        let end = self.pos.checked_add(n).ok_or(short)?;
        let out = self.bytes.get(self.pos..end).ok_or(short)?;
        self.pos = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Short> {
        let s = self.take(N as u64)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    pub fn u8(&mut self) -> Result<u8, Short> {
        Ok(self.array::<1>()?[0])
    }

    pub fn u32(&mut self) -> Result<u32, Short> {
        self.array().map(u32::from_le_bytes)
    }

    pub fn u64(&mut self) -> Result<u64, Short> {
        self.array().map(u64::from_le_bytes)
    }

    /// Little-endian scalar of any fixed width, for metadata values.
    pub fn le<const N: usize>(&mut self) -> Result<[u8; N], Short> {
        self.array()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_reads_do_not_move() {
        let mut c = Cursor::new(&[1, 0, 0, 0, 9]);
        assert_eq!(c.u32().unwrap(), 1);
        let s = c.u64().unwrap_err();
        assert_eq!((s.at, s.need, s.have), (4, 8, 1));
        assert_eq!(c.pos(), 4);
        assert!(c.take(u64::MAX).is_err());
        assert_eq!(c.u8().unwrap(), 9);
        assert_eq!(c.remaining(), 0);
    }
}
