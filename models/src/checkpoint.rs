//! The checkpoint file: a JSON header (training state, space, configuration) and named binary
//! sections (burn records of the supernet, the optimizer and the teacher), sealed by a SHA-256 of
//! everything before it, written atomically (temporary file, then rename).
//!
//! Layout: `BFCKPT1\n`, u64 LE header length, header JSON, u32 LE section count, then per section
//! u32 LE name length, name, u64 LE data length, data; finally the 32-byte digest.

use std::path::Path;

use sha2::{Digest, Sha256};

/// The first bytes of every container (supernet checkpoints and predictors).
pub const MAGIC: &[u8] = b"BFCKPT1\n";

/// A checkpoint error phrased for the user on one line.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CheckpointError(pub String);

/// A header and named byte sections.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Container {
    pub header: String,
    pub sections: Vec<(String, Vec<u8>)>,
}

impl Container {
    pub fn section(&self, name: &str) -> Option<&[u8]> {
        self.sections.iter().find(|(n, _)| n == name).map(|(_, d)| d.as_slice())
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&(self.header.len() as u64).to_le_bytes());
        out.extend_from_slice(self.header.as_bytes());
        out.extend_from_slice(&(self.sections.len() as u32).to_le_bytes());
        for (name, data) in &self.sections {
            out.extend_from_slice(&(name.len() as u32).to_le_bytes());
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(&(data.len() as u64).to_le_bytes());
            out.extend_from_slice(data);
        }
        let digest = Sha256::digest(&out);
        out.extend_from_slice(&digest);
        out
    }

    pub fn from_bytes(bytes: &[u8], origin: &str) -> Result<Container, CheckpointError> {
        let bad = |m: &str| CheckpointError(format!("{origin}: not a valid checkpoint ({m})"));
        if !bytes.starts_with(MAGIC) {
            return Err(bad("wrong magic; is this a bitfusion supernet checkpoint?"));
        }
        if bytes.len() < MAGIC.len() + 32 {
            return Err(bad("truncated"));
        }
        let (body, digest) = bytes.split_at(bytes.len() - 32);
        if Sha256::digest(body).as_slice() != digest {
            return Err(bad("checksum mismatch: the file is truncated or corrupt"));
        }
        let mut at = MAGIC.len();
        let mut take = |n: usize| -> Result<&[u8], CheckpointError> {
            let s = body.get(at..at + n).ok_or_else(|| bad("truncated"))?;
            at += n;
            Ok(s)
        };
        let hlen = u64::from_le_bytes(take(8)?.try_into().expect("8 bytes")) as usize;
        let header = String::from_utf8(take(hlen)?.to_vec()).map_err(|_| bad("header is not UTF-8"))?;
        let n = u32::from_le_bytes(take(4)?.try_into().expect("4 bytes"));
        let mut sections = Vec::new();
        for _ in 0..n {
            let l = u32::from_le_bytes(take(4)?.try_into().expect("4 bytes")) as usize;
            let name = String::from_utf8(take(l)?.to_vec()).map_err(|_| bad("section name is not UTF-8"))?;
            let l = u64::from_le_bytes(take(8)?.try_into().expect("8 bytes")) as usize;
            sections.push((name, take(l)?.to_vec()));
        }
        Ok(Container { header, sections })
    }

    /// Write atomically and durably (`bitfusion_util::write_atomic`), creating the directory.
    pub fn save(&self, path: &Path) -> Result<(), CheckpointError> {
        let err = |e: std::io::Error| CheckpointError(format!("{}: {e}", path.display()));
        bitfusion_util::create_parent(path).map_err(err)?;
        bitfusion_util::write_atomic(path, &self.to_bytes()).map_err(err)
    }

    pub fn load(path: &Path) -> Result<Container, CheckpointError> {
        let bytes = std::fs::read(path).map_err(|e| CheckpointError(format!("{}: {e}", path.display())))?;
        Container::from_bytes(&bytes, &path.display().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_detects_corruption() {
        let c = Container { header: "{\"a\":1}".into(), sections: vec![("net".into(), vec![1, 2, 3]), ("opt".into(), vec![])] };
        let bytes = c.to_bytes();
        assert_eq!(Container::from_bytes(&bytes, "x").unwrap(), c);
        let mut bad = bytes.clone();
        bad[12] ^= 1;
        assert!(Container::from_bytes(&bad, "x").unwrap_err().0.contains("checksum mismatch"));
        assert!(Container::from_bytes(&bytes[..bytes.len() - 3], "x").unwrap_err().0.contains("checksum"));
        assert!(Container::from_bytes(b"hello", "x").unwrap_err().0.contains("wrong magic"));
    }
}
