//! Signed checkpoints: every so often the writer signs "the chain up to
//! record `seq` has hash `h`" with the node's Ed25519 key. A hash chain alone
//! proves only that records agree with each other; someone able to rewrite
//! the whole file could rebuild a consistent chain. They cannot sign.

use std::fmt;
use std::path::Path;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::AuditError;
use crate::chain::Hash;

/// Checkpoints of writers that let a batch overshoot the record interval.
const SIGNED_TAG_V1: &[u8] = b"nrls-audit-checkpoint-v1\0";
/// Checkpoints of writers that sign at exactly every `interval` records, so
/// `verify` may hold every run of unsigned records to the interval.
const SIGNED_TAG_V2: &[u8] = b"nrls-audit-checkpoint-v2\0";
/// Checkpoints signed at start for records a previous run left unsigned (a
/// crash): held to the record interval, not to `seconds`.
const SIGNED_TAG_RECOVERED: &[u8] = b"nrls-audit-checkpoint-v2-recovered\0";

/// Which promise a checkpoint's signer made about the run it closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointVersion {
    /// Older writers: a run may exceed `interval` by up to one batch.
    V1,
    /// No run of unsigned records before this checkpoint exceeds `interval`.
    V2,
    /// As `V2`, signed at start for the tail a previous run left unsigned:
    /// its records may have waited longer than `seconds`.
    Recovered,
}

/// One signed checkpoint, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The last record covered.
    pub seq: u64,
    /// That record's chain hash.
    pub hash: Hash,
    /// The records-per-checkpoint setting in force: more unsigned records
    /// than this after the last checkpoint means checkpoints were removed.
    pub interval: u64,
    /// RFC 3339.
    pub created_at: String,
    /// Which key signed (see [`CheckpointKey::id`]).
    pub key_id: String,
    /// Ed25519 over [`Checkpoint::signed_bytes`].
    pub signature: [u8; 64],
}

impl Checkpoint {
    /// The bytes signed: a tag, then seq, hash, interval and time.
    pub fn signed_bytes(
        version: CheckpointVersion,
        seq: u64,
        hash: &Hash,
        interval: u64,
        created_at: &str,
    ) -> Vec<u8> {
        let tag = match version {
            CheckpointVersion::V1 => SIGNED_TAG_V1,
            CheckpointVersion::V2 => SIGNED_TAG_V2,
            CheckpointVersion::Recovered => SIGNED_TAG_RECOVERED,
        };
        let mut out = Vec::with_capacity(tag.len() + 56 + created_at.len());
        out.extend_from_slice(tag);
        out.extend_from_slice(&seq.to_be_bytes());
        out.extend_from_slice(hash);
        out.extend_from_slice(&interval.to_be_bytes());
        out.extend_from_slice(&(created_at.len() as u64).to_be_bytes());
        out.extend_from_slice(created_at.as_bytes());
        out
    }

    /// A line for logs and monitoring: keep the latest one somewhere the
    /// audit file's owner cannot write, and pass it to `verify` as an anchor.
    pub fn anchor_text(&self) -> String {
        format!("{}:{}", self.seq, hex(&self.hash))
    }
}

/// The public half: verifies checkpoints.
#[derive(Clone, PartialEq, Eq)]
pub struct CheckpointKey(VerifyingKey);

impl CheckpointKey {
    /// Hex of the first 8 bytes of SHA-256 of the public key.
    pub fn id(&self) -> String {
        hex(&Sha256::digest(self.0.as_bytes())[..8])
    }

    /// The 32-byte public key in hex (for `--public-key`).
    pub fn to_hex(&self) -> String {
        hex(self.0.as_bytes())
    }

    /// Reads a key written by [`CheckpointKey::to_hex`].
    pub fn from_hex(text: &str) -> Result<CheckpointKey, AuditError> {
        let bytes: [u8; 32] = unhex(text.trim())
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| AuditError::Key("a public key is 64 hex digits".into()))?;
        VerifyingKey::from_bytes(&bytes)
            .map(CheckpointKey)
            .map_err(|_| AuditError::Key("not an Ed25519 public key".into()))
    }

    /// Whether `checkpoint` was signed by this key.
    pub fn verifies(&self, checkpoint: &Checkpoint) -> bool {
        self.version_of(checkpoint).is_some()
    }

    /// The version `checkpoint` was signed as by this key; `None` if this
    /// key did not sign it.
    pub fn version_of(&self, checkpoint: &Checkpoint) -> Option<CheckpointVersion> {
        if checkpoint.key_id != self.id() {
            return None;
        }
        let signature = Signature::from_bytes(&checkpoint.signature);
        [
            CheckpointVersion::V2,
            CheckpointVersion::Recovered,
            CheckpointVersion::V1,
        ]
        .into_iter()
        .find(|&version| {
            let message = Checkpoint::signed_bytes(
                version,
                checkpoint.seq,
                &checkpoint.hash,
                checkpoint.interval,
                &checkpoint.created_at,
            );
            self.0.verify_strict(&message, &signature).is_ok()
        })
    }
}

impl fmt::Debug for CheckpointKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CheckpointKey({})", self.id())
    }
}

/// The node's private signing key. Its Debug never shows the key.
#[derive(Clone)]
pub struct CheckpointSigner(SigningKey);

impl fmt::Debug for CheckpointSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CheckpointSigner({})", self.public().id())
    }
}

impl CheckpointSigner {
    /// A signer from its 32-byte secret seed (tests, or a key kept elsewhere).
    pub fn from_seed(seed: [u8; 32]) -> CheckpointSigner {
        CheckpointSigner(SigningKey::from_bytes(&seed))
    }

    /// Reads the 64-hex-digit seed in `path`, or creates it with fresh random
    /// bytes (mode 0600) if the file does not exist.
    pub fn load_or_create(path: &Path) -> Result<CheckpointSigner, AuditError> {
        let key_error = |why: String| AuditError::Key(format!("{}: {why}", path.display()));
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let seed: [u8; 32] = unhex(text.trim())
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| key_error("expected 64 hex digits".into()))?;
                Ok(CheckpointSigner::from_seed(seed))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut seed = [0u8; 32];
                getrandom::fill(&mut seed).map_err(|e| key_error(e.to_string()))?;
                if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                    std::fs::create_dir_all(parent).map_err(|e| key_error(e.to_string()))?;
                }
                write_private(path, &hex(&seed)).map_err(|e| key_error(e.to_string()))?;
                tracing::info!(path = %path.display(), "created the audit checkpoint signing key");
                Ok(CheckpointSigner::from_seed(seed))
            }
            Err(e) => Err(key_error(e.to_string())),
        }
    }

    /// Reads an existing key; never creates one (for `nrls audit verify`).
    pub fn load(path: &Path) -> Result<CheckpointSigner, AuditError> {
        if !path.exists() {
            return Err(AuditError::Key(format!(
                "{}: no audit signing key",
                path.display()
            )));
        }
        CheckpointSigner::load_or_create(path)
    }

    /// The public key that verifies this signer's checkpoints.
    pub fn public(&self) -> CheckpointKey {
        CheckpointKey(self.0.verifying_key())
    }

    /// Signs a checkpoint at `seq` with chain hash `hash` (version 2: the
    /// writers of this version never leave more than `interval` records
    /// unsigned).
    pub fn sign(&self, seq: u64, hash: Hash, interval: u64, created_at: String) -> Checkpoint {
        self.sign_as(CheckpointVersion::V2, seq, hash, interval, created_at)
    }

    /// Signs a checkpoint as `version`.
    pub fn sign_as(
        &self,
        version: CheckpointVersion,
        seq: u64,
        hash: Hash,
        interval: u64,
        created_at: String,
    ) -> Checkpoint {
        let message = Checkpoint::signed_bytes(version, seq, &hash, interval, &created_at);
        Checkpoint {
            seq,
            hash,
            interval,
            key_id: self.public().id(),
            signature: self.0.sign(&message).to_bytes(),
            created_at,
        }
    }
}

#[cfg(unix)]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    std::fs::write(path, text)
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses hex (either case); `None` if not an even number of hex digits.
pub fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.is_ascii() {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_and_verifies() {
        let signer = CheckpointSigner::from_seed([7; 32]);
        let cp = signer.sign(10, [1; 32], 100, "2026-01-01T00:00:00Z".into());
        assert!(signer.public().verifies(&cp));
        let mut forged = cp.clone();
        forged.seq = 11;
        assert!(!signer.public().verifies(&forged));
        let other = CheckpointSigner::from_seed([8; 32]);
        assert!(!other.public().verifies(&cp));
        let key = CheckpointKey::from_hex(&signer.public().to_hex()).unwrap();
        assert_eq!(key, signer.public());
        assert!(!format!("{signer:?}").contains("07070707"));
    }

    #[test]
    fn checkpoints_of_older_writers_still_verify_as_version_1() {
        let signer = CheckpointSigner::from_seed([7; 32]);
        let created_at = "2026-01-01T00:00:00Z";
        let message = Checkpoint::signed_bytes(CheckpointVersion::V1, 5, &[2; 32], 10, created_at);
        let old = Checkpoint {
            seq: 5,
            hash: [2; 32],
            interval: 10,
            created_at: created_at.into(),
            key_id: signer.public().id(),
            signature: signer.0.sign(&message).to_bytes(),
        };
        assert_eq!(
            signer.public().version_of(&old),
            Some(CheckpointVersion::V1)
        );
        let new = signer.sign(5, [2; 32], 10, created_at.into());
        assert_eq!(
            signer.public().version_of(&new),
            Some(CheckpointVersion::V2)
        );
    }

    #[test]
    fn key_file_is_created_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit-signing-key");
        assert!(CheckpointSigner::load(&path).is_err());
        let a = CheckpointSigner::load_or_create(&path).unwrap();
        let b = CheckpointSigner::load(&path).unwrap();
        assert_eq!(a.public(), b.public());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
