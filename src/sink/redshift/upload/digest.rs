//! MD5s of a file (whole and per part, in one streaming pass), the ETags S3 derives from them,
//! and their hex / base64 forms.

use super::IO_BUFFER;
use base64::Engine as _;
use md5::{Digest, Md5};
use std::io::Read;
use std::path::Path;

/// MD5 of a file and, with `part_size`, of each part, in one streaming pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct FileDigest {
    pub(super) size: u64,
    pub(super) md5: [u8; 16],
    /// Empty for a single put.
    pub(super) parts: Vec<[u8; 16]>,
}

pub(super) fn digest_file(path: &Path, part_size: Option<u64>) -> std::io::Result<FileDigest> {
    let mut file = std::fs::File::open(path)?;
    let mut buf = vec![0u8; IO_BUFFER];
    let mut whole = Md5::new();
    let mut part = Md5::new();
    let mut in_part = 0u64;
    let mut parts = Vec::new();
    let mut size = 0u64;
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let chunk = &buf[..n];
        whole.update(chunk);
        size += n as u64;
        if let Some(part_size) = part_size {
            let mut rest = chunk;
            while !rest.is_empty() {
                let take = ((part_size - in_part) as usize).min(rest.len());
                part.update(&rest[..take]);
                in_part += take as u64;
                rest = &rest[take..];
                if in_part == part_size {
                    parts.push(part.finalize_reset().into());
                    in_part = 0;
                }
            }
        }
    }
    if part_size.is_some() && (in_part > 0 || parts.is_empty()) {
        parts.push(part.finalize().into());
    }
    Ok(FileDigest {
        size,
        md5: whole.finalize().into(),
        parts,
    })
}

/// S3's ETag for a multipart object: MD5 of the parts' MD5s, `-`, number of parts.
pub(super) fn multipart_etag(parts: &[[u8; 16]]) -> String {
    let mut h = Md5::new();
    for p in parts {
        h.update(p);
    }
    format!("{}-{}", hex(&h.finalize()), parts.len())
}

pub(super) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

pub(super) fn unquote(etag: &str) -> String {
    etag.trim_matches('"').to_string()
}

pub(super) fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn digests_match_whole_and_parts() -> std::io::Result<()> {
        let mut f = tempfile::NamedTempFile::new()?;
        let data: Vec<u8> = (0..3_500_000u32).map(|i| (i % 251) as u8).collect();
        f.write_all(&data)?;
        f.flush()?;
        let d = digest_file(f.path(), None)?;
        assert_eq!(d.size, data.len() as u64);
        assert_eq!(d.md5, <[u8; 16]>::from(Md5::digest(&data)));
        assert!(d.parts.is_empty());
        // Part size not a multiple of the read buffer.
        let ps = 1_300_001u64;
        let d = digest_file(f.path(), Some(ps))?;
        let want: Vec<[u8; 16]> = data
            .chunks(ps as usize)
            .map(|c| Md5::digest(c).into())
            .collect();
        assert_eq!(d.parts, want);
        assert_eq!(d.parts.len(), 3);
        // Exact multiple: no empty trailing part.
        let d = digest_file(f.path(), Some(1_750_000))?;
        assert_eq!(d.parts.len(), 2);
        Ok(())
    }

    #[test]
    fn hex_and_etag() {
        assert_eq!(hex(&[0, 1, 0xab, 0xff]), "0001abff");
        // Known value: MD5("") = d41d8cd98f00b204e9800998ecf8427e
        assert_eq!(hex(&Md5::digest(b"")), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(b64(&Md5::digest(b"")), "1B2M2Y8AsgTpgAmY7PhCfg==");
        let e = multipart_etag(&[[0u8; 16], [1u8; 16]]);
        assert!(e.ends_with("-2") && e.len() == 34, "{e}");
    }
}
