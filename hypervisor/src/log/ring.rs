//! A fixed-size ring of recent log text. When it wraps, the oldest bytes go
//! and a count of what was dropped is kept.

/// Bytes of log text kept.
pub const RING_SIZE: usize = 16 * 1024;

pub struct Ring {
    buf: [u8; RING_SIZE],
    /// Total bytes ever pushed; the ring holds the last `min(total, SIZE)`.
    total: u64,
}

impl Ring {
    pub const fn new() -> Self {
        Self {
            buf: [0; RING_SIZE],
            total: 0,
        }
    }

    pub fn push(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.buf[(self.total % RING_SIZE as u64) as usize] = b;
            self.total += 1;
        }
    }

    /// Bytes ever pushed.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Bytes lost to wrapping so far.
    pub fn dropped(&self) -> u64 {
        self.total.saturating_sub(RING_SIZE as u64)
    }

    /// Copies bytes written since `cursor` (a count of bytes ever pushed)
    /// into `out`, oldest first. Returns (bytes copied, bytes lost to
    /// wrapping since `cursor`, the cursor to pass next time).
    pub fn read_since(&self, cursor: u64, out: &mut [u8]) -> (usize, u64, u64) {
        let oldest = self.total.saturating_sub(RING_SIZE as u64);
        let start = cursor.clamp(oldest, self.total);
        let dropped = start - cursor.min(start);
        let n = (self.total - start).min(out.len() as u64);
        for (i, slot) in out.iter_mut().take(n as usize).enumerate() {
            *slot = self.buf[((start + i as u64) % RING_SIZE as u64) as usize];
        }
        (n as usize, dropped, start + n)
    }

    /// Copies the newest `min(out.len(), held)` bytes, oldest first.
    pub fn copy_recent(&self, out: &mut [u8]) -> usize {
        let held = self.total.min(RING_SIZE as u64);
        let n = held.min(out.len() as u64);
        let start = self.total - n;
        for (i, slot) in out.iter_mut().take(n as usize).enumerate() {
            *slot = self.buf[((start + i as u64) % RING_SIZE as u64) as usize];
        }
        n as usize
    }
}

impl Default for Ring {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_since_a_cursor() {
        let mut r = Ring::new();
        r.push(b"one\ntwo\n");
        let mut out = [0u8; 4];
        let (n, lost, c) = r.read_since(0, &mut out);
        assert_eq!((&out[..n], lost, c), (&b"one\n"[..], 0, 4));
        let (n, lost, c) = r.read_since(c, &mut out);
        assert_eq!((&out[..n], lost, c), (&b"two\n"[..], 0, 8));
        assert_eq!(r.read_since(c, &mut out), (0, 0, 8));
        r.push(&vec![b'x'; RING_SIZE + 3]);
        let mut big = vec![0u8; RING_SIZE * 2];
        let (n, lost, c) = r.read_since(8, &mut big);
        assert_eq!((n, lost, c), (RING_SIZE, 3, 8 + RING_SIZE as u64 + 3));
    }

    #[test]
    fn keeps_the_newest_bytes() {
        let mut r = Ring::new();
        r.push(b"hello ");
        r.push(b"world");
        let mut out = [0u8; 5];
        assert_eq!(r.copy_recent(&mut out), 5);
        assert_eq!(&out, b"world");
        assert_eq!(r.dropped(), 0);
        let big = vec![b'x'; RING_SIZE + 10];
        r.push(&big);
        assert_eq!(r.dropped(), 21);
        let mut all = vec![0u8; RING_SIZE * 2];
        assert_eq!(r.copy_recent(&mut all), RING_SIZE);
        assert!(all[..RING_SIZE].iter().all(|&b| b == b'x'));
    }
}
