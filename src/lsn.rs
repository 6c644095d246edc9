//! Log sequence numbers: PostgreSQL's `X/Y` positions, or a local sequence for replayed input.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A position in the source's WAL (`16/B374D848`), as a replication slot sends it with each
/// message. Replayed input (`--stdin`) has no LSNs, so each message gets the next number of a
/// local sequence instead (continuing after the highest LSN the WAL has seen).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(into = "String", try_from = "String")]
pub struct Lsn(pub u64);

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

impl From<Lsn> for String {
    fn from(l: Lsn) -> String {
        l.to_string()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("invalid LSN {0:?}: expected X/Y with hexadecimal X and Y")]
pub struct LsnParseError(String);

impl std::str::FromStr for Lsn {
    type Err = LsnParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || LsnParseError(s.to_string());
        let (hi, lo) = s.split_once('/').ok_or_else(err)?;
        let hi = u32::from_str_radix(hi, 16).map_err(|_| err())?;
        let lo = u32::from_str_radix(lo, 16).map_err(|_| err())?;
        Ok(Lsn((u64::from(hi) << 32) | u64::from(lo)))
    }
}

impl TryFrom<String> for Lsn {
    type Error = LsnParseError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_parse_round_trip() {
        let l = Lsn(0x16_B374_D848);
        assert_eq!(l.to_string(), "16/B374D848");
        assert_eq!("16/B374D848".parse::<Lsn>().unwrap(), l);
        assert_eq!("0/0".parse::<Lsn>().unwrap(), Lsn(0));
        assert!("16".parse::<Lsn>().is_err());
        assert!("x/1".parse::<Lsn>().is_err());
    }
}
