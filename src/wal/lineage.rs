//! The WAL lineage: a random 128-bit id created with the WAL directory.
//!
//! It is written to `state.json` (fsynced) before the first segment, and into every segment
//! header. Targets key their ledgers on (lineage, segment id, table), so a new WAL directory (a
//! new host, a replaced disk), a second re_dms instance writing into the same warehouse, or a
//! rerun can never match ledger rows that another lineage wrote. Shown as 32 lower-case hex
//! digits.

use std::fmt;
use std::io::Read;

#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Lineage([u8; 16]);

impl Lineage {
    /// A fresh random lineage from the operating system's generator.
    pub fn generate() -> std::io::Result<Self> {
        let mut b = [0u8; 16];
        std::fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
        if b == [0u8; 16] {
            return Err(std::io::Error::other("/dev/urandom returned zeros"));
        }
        Ok(Self(b))
    }

    pub const fn from_bytes(b: [u8; 16]) -> Self {
        Self(b)
    }

    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// Parses the 32-hex-digit form.
    pub fn parse(text: &str) -> Option<Self> {
        if text.len() != 32 || !text.is_ascii() {
            return None;
        }
        let mut b = [0u8; 16];
        for (i, out) in b.iter_mut().enumerate() {
            *out = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(Self(b))
    }
}

impl fmt::Display for Lineage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Lineage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Lineage({self})")
    }
}

impl serde::Serialize for Lineage {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Lineage {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).ok_or_else(|| {
            serde::de::Error::custom(format!("lineage {text:?} is not 32 hex digits"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_lineages_differ_and_round_trip() {
        let a = Lineage::generate().unwrap();
        let b = Lineage::generate().unwrap();
        assert_ne!(a, b);
        let text = a.to_string();
        assert_eq!(text.len(), 32);
        assert_eq!(Lineage::parse(&text), Some(a));
        assert_eq!(Lineage::parse("xyz"), None);
        assert_eq!(Lineage::parse(&"g".repeat(32)), None);
    }
}
