//! Encryption at rest: AES-256-GCM per stored block.
//!
//! Sealed format: `"FRB1"` | key id (u32 LE) | encoding (u8) | nonce (12) |
//! ciphertext + tag. The associated data binds the block id and encoding, so a
//! sealed block cannot be swapped for another one on disk unnoticed. The key id
//! names the master key that sealed it; [`Vault`] keeps the current key and any
//! older ones, which is what key rotation needs.

use std::collections::HashMap;
use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use anyhow::{Context, bail};
use ferry_shared::BlockId;
use ferry_shared::block::BlockEncoding;

const MAGIC: &[u8; 4] = b"FRB1";
const HEADER: usize = 4 + 4 + 1 + 12;

/// Environment variable holding the master key (64 hex digits) instead of a file.
pub const KEY_ENV: &str = "FERRY_MASTER_KEY";

pub struct Vault {
    /// Keys cookies and other server-made tokens (derived from the master key).
    mac_key: [u8; 32],
    current: u32,
    keys: HashMap<u32, Aes256Gcm>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Vault {{ current: {}, keys: [redacted; {}] }}", self.current, self.keys.len())
    }
}

fn key_id(key: &[u8; 32]) -> u32 {
    let h = blake3::keyed_hash(key, b"ferry key id");
    u32::from_le_bytes(h.as_bytes()[..4].try_into().expect("4 bytes"))
}

fn parse_hex_key(s: &str) -> anyhow::Result<[u8; 32]> {
    let mut key = [0u8; 32];
    hex::decode_to_slice(s.trim(), &mut key).context("master key must be 64 hex digits")?;
    Ok(key)
}

impl Vault {
    pub fn from_key(key: [u8; 32]) -> Self {
        let id = key_id(&key);
        let cipher = Aes256Gcm::new(&Key::<Aes256Gcm>::from(key));
        let mac_key = blake3::derive_key("ferry 2026-12 server-made tokens", &key);
        Vault { mac_key, current: id, keys: HashMap::from([(id, cipher)]) }
    }

    /// A MAC of `msg` under a key only this server has (for cookies it
    /// hands out and checks itself).
    pub fn mac(&self, msg: &[u8]) -> [u8; 32] {
        *blake3::keyed_hash(&self.mac_key, msg).as_bytes()
    }

    /// The key from `FERRY_MASTER_KEY`, else from `DIR/master.key`; never
    /// creates one (for commands that read blocks an existing server sealed).
    pub fn load(data_dir: &Path) -> anyhow::Result<Self> {
        if let Ok(hex_key) = std::env::var(KEY_ENV) {
            return Ok(Self::from_key(parse_hex_key(&hex_key).context(KEY_ENV)?));
        }
        let path = data_dir.join("master.key");
        let s = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "reading the master key {} (or give it in {KEY_ENV}): the blocks cannot be read without it",
                path.display()
            )
        })?;
        Ok(Self::from_key(parse_hex_key(&s).with_context(|| path.display().to_string())?))
    }

    /// The key from `FERRY_MASTER_KEY`, else from `DIR/master.key`, created
    /// (mode 0600) on first start.
    pub fn load_or_create(data_dir: &Path) -> anyhow::Result<Self> {
        if let Ok(hex_key) = std::env::var(KEY_ENV) {
            return Ok(Self::from_key(parse_hex_key(&hex_key).context(KEY_ENV)?));
        }
        let path = data_dir.join("master.key");
        match std::fs::read_to_string(&path) {
            Ok(s) => Ok(Self::from_key(parse_hex_key(&s).with_context(|| path.display().to_string())?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key: [u8; 32] = rand::random();
                crate::fsutil::write_private_file(&path, hex::encode(key).as_bytes())?;
                tracing::info!(path = %path.display(), "generated a new master key; back it up: blocks cannot be read without it");
                Ok(Self::from_key(key))
            }
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    fn aad(id: &BlockId, encoding: u8) -> [u8; 37] {
        let mut aad = [0u8; 37];
        aad[..4].copy_from_slice(MAGIC);
        aad[4..36].copy_from_slice(id.as_bytes());
        aad[36] = encoding;
        aad
    }

    pub fn seal(&self, id: &BlockId, encoding: BlockEncoding, data: &[u8]) -> Vec<u8> {
        let enc = encoding_byte(encoding);
        let nonce_bytes: [u8; 12] = rand::random();
        let cipher = &self.keys[&self.current];
        let ct = cipher
            .encrypt(&Nonce::from(nonce_bytes), Payload { msg: data, aad: &Self::aad(id, enc) })
            .expect("AES-GCM encryption cannot fail for block-sized input");
        let mut out = Vec::with_capacity(HEADER + ct.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.current.to_le_bytes());
        out.push(enc);
        out.extend_from_slice(&nonce_bytes);
        out.extend_from_slice(&ct);
        out
    }

    /// Decrypts a sealed block, checking that it is the block `id`.
    pub fn open(&self, id: &BlockId, sealed: &[u8]) -> anyhow::Result<(BlockEncoding, Vec<u8>)> {
        if sealed.len() < HEADER + 16 || &sealed[..4] != MAGIC {
            bail!("block {id} is not a sealed Ferry block");
        }
        let key_id = u32::from_le_bytes(sealed[4..8].try_into().expect("4 bytes"));
        let enc = sealed[8];
        let encoding = match enc {
            0 => BlockEncoding::Raw,
            1 => BlockEncoding::Zstd,
            _ => bail!("block {id} has unknown encoding {enc}"),
        };
        let nonce: [u8; 12] = sealed[9..21].try_into().expect("12 bytes");
        let cipher =
            self.keys.get(&key_id).with_context(|| format!("block {id} was sealed with unknown key {key_id:08x}"))?;
        let plain = cipher
            .decrypt(&Nonce::from(nonce), Payload { msg: &sealed[HEADER..], aad: &Self::aad(id, enc) })
            .map_err(|_| anyhow::anyhow!("block {id} failed authentication (corrupt or swapped on disk)"))?;
        Ok((encoding, plain))
    }
}

fn encoding_byte(e: BlockEncoding) -> u8 {
    match e {
        BlockEncoding::Raw => 0,
        BlockEncoding::Zstd => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_roundtrip_and_tamper() {
        let v = Vault::from_key([7; 32]);
        let id = BlockId::of(b"data");
        let sealed = v.seal(&id, BlockEncoding::Raw, b"data");
        assert_eq!(v.open(&id, &sealed).unwrap(), (BlockEncoding::Raw, b"data".to_vec()));
        let other = BlockId::of(b"other");
        assert!(v.open(&other, &sealed).is_err(), "bound to its id");
        let mut bad = sealed.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert!(v.open(&id, &bad).is_err());
        assert!(Vault::from_key([8; 32]).open(&id, &sealed).is_err());
    }
}
