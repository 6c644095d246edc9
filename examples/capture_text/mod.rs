//! What the benchmark capture generators (`gen_capture/`, `gen_shapes.rs`) share: the PRNG and
//! the buffered writer of test_decoding text with its value formatters. Included by each with
//! `#[path]` (a folder without `main.rs` is not an example of its own). Standard library only.

// Each generator uses part of it.
#![allow(dead_code)]

use std::io::{self, Write};

/// Microseconds in a day.
pub const DAY_US: i64 = 86_400_000_000;
// ---------------------------------------------------------------------------------------------
// PRNG: xorshift64*, seeded through splitmix64.

pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        let s = splitmix64(seed);
        Rng(if s == 0 { 0x9E37_79B9_7F4A_7C15 } else { s })
    }

    #[inline]
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (n > 0).
    #[inline]
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `lo..=hi`.
    #[inline]
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo + 1) as u64) as i64
    }

    /// True with probability `p` percent.
    #[inline]
    pub fn percent(&mut self, p: u64) -> bool {
        self.below(100) < p
    }

    /// True with probability `p` / 1000.
    #[inline]
    pub fn per_mille(&mut self, p: u64) -> bool {
        self.below(1000) < p
    }

    #[inline]
    pub fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len() as u64) as usize]
    }
}
// ---------------------------------------------------------------------------------------------
// Output: a byte buffer written to stdout in ~1 MiB chunks, with value formatters.

pub struct Out<W: Write> {
    pub buf: Vec<u8>,
    pub sink: W,
    /// Bytes written to the sink so far.
    pub written: u64,
}

impl<W: Write> Out<W> {
    pub const CHUNK: usize = 1 << 20;

    pub fn new(sink: W) -> Self {
        Out {
            buf: Vec::with_capacity(Self::CHUNK + 64 * 1024),
            sink,
            written: 0,
        }
    }

    #[inline]
    pub fn s(&mut self, b: &str) {
        self.buf.extend_from_slice(b.as_bytes());
    }

    #[inline]
    pub fn u(&mut self, mut n: u64) {
        let mut tmp = [0u8; 20];
        let mut i = tmp.len();
        loop {
            i -= 1;
            tmp[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.buf.extend_from_slice(&tmp[i..]);
    }

    #[inline]
    pub fn i(&mut self, n: i64) {
        if n < 0 {
            self.buf.push(b'-');
        }
        self.u(n.unsigned_abs());
    }

    /// Zero-padded to `width` digits.
    #[inline]
    pub fn pad(&mut self, n: u64, width: usize) {
        let mut tmp = [b'0'; 20];
        let mut i = tmp.len();
        let mut n = n;
        while n > 0 {
            i -= 1;
            tmp[i] = b'0' + (n % 10) as u8;
            n /= 10;
        }
        let start = i.min(tmp.len() - width.min(tmp.len()));
        self.buf.extend_from_slice(&tmp[start..]);
    }

    /// Text inside quotes: `'` doubled, nothing else escaped.
    #[inline]
    pub fn qtext(&mut self, s: &str) {
        let mut rest = s.as_bytes();
        while let Some(p) = rest.iter().position(|&c| c == b'\'') {
            self.buf.extend_from_slice(&rest[..=p]);
            self.buf.push(b'\'');
            rest = &rest[p + 1..];
        }
        self.buf.extend_from_slice(rest);
    }

    #[inline]
    pub fn q(&mut self, s: &str) {
        self.buf.push(b'\'');
        self.qtext(s);
        self.buf.push(b'\'');
    }

    pub fn hex(&mut self, mut x: u64, digits: u32) {
        const H: &[u8; 16] = b"0123456789abcdef";
        let mut tmp = [0u8; 16];
        for k in (0..digits as usize).rev() {
            tmp[k] = H[(x & 15) as usize];
            x >>= 4;
        }
        self.buf.extend_from_slice(&tmp[..digits as usize]);
    }

    /// Fixed-point numeric: `units` / 10^scale, printed with exactly `scale` decimals.
    pub fn fixed(&mut self, units: i64, scale: u32) {
        let p = 10u64.pow(scale);
        if units < 0 {
            self.buf.push(b'-');
        }
        let a = units.unsigned_abs();
        self.u(a / p);
        if scale > 0 {
            self.buf.push(b'.');
            self.pad(a % p, scale as usize);
        }
    }

    pub fn date(&mut self, days_since_epoch: i64) {
        let (y, m, d) = civil_from_days(days_since_epoch);
        self.pad(y as u64, 4);
        self.buf.push(b'-');
        self.pad(m, 2);
        self.buf.push(b'-');
        self.pad(d, 2);
    }

    /// `HH:MM:SS[.ffffff]` with trailing zeros of the fraction trimmed, as PostgreSQL prints.
    pub fn time_of_day(&mut self, us: u64) {
        let secs = us / 1_000_000;
        self.pad(secs / 3600, 2);
        self.buf.push(b':');
        self.pad(secs / 60 % 60, 2);
        self.buf.push(b':');
        self.pad(secs % 60, 2);
        let mut frac = us % 1_000_000;
        if frac > 0 {
            let mut width = 6;
            while frac.is_multiple_of(10) {
                frac /= 10;
                width -= 1;
            }
            self.buf.push(b'.');
            self.pad(frac, width);
        }
    }

    /// Quoted timestamp (`tz`: timestamptz in a UTC session, `+00` suffix).
    pub fn ts(&mut self, us: i64, tz: bool) {
        self.buf.push(b'\'');
        self.date(us.div_euclid(DAY_US));
        self.buf.push(b' ');
        self.time_of_day(us.rem_euclid(DAY_US) as u64);
        if tz {
            self.s("+00");
        }
        self.buf.push(b'\'');
    }

    pub fn float<T: std::fmt::Display>(&mut self, x: T) {
        // Rust's shortest round-trip form equals PostgreSQL's (extra_float_digits >= 1) for the
        // moderate magnitudes generated here; exponent forms come from the ODD_* pools.
        let _ = write!(self.buf, "{x}");
    }

    pub fn end_line(&mut self) -> io::Result<()> {
        self.buf.push(b'\n');
        if self.buf.len() >= Self::CHUNK {
            self.flush()?;
        }
        Ok(())
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.sink.write_all(&self.buf)?;
        self.written += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }
}

/// Howard Hinnant's days -> (year, month, day), proleptic Gregorian.
pub fn civil_from_days(z: i64) -> (i64, u64, u64) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u64;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u64;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}
