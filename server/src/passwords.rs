//! Password hashing (argon2id with the crate's default parameters) and tokens.
//!
//! Each argon2 check fills 19 MiB. Run on any blocking thread, every
//! concurrent check allocated its own, and the allocator kept it per thread:
//! a flood of failed logins took a server from 49 MiB to 11 GiB. So checks
//! go through [`PasswordWork`]: at most one per core at once, each in a
//! buffer allocated once and reused, and a bounded queue; more is refused
//! (429) before any work. Memory for passwords is therefore `cores × 19 MiB`,
//! whatever arrives.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use argon2::password_hash::{Output, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use base64::Engine;

/// Most argon2 memory a stored hash may ask for (a hash made elsewhere with
/// larger parameters is refused rather than allocated), in 1 KiB blocks.
const MAX_BLOCKS: usize = 256 * 1024;
/// Checks waiting for a free slot at most; more are refused at once.
const MAX_WAITING: usize = 64;

/// The password checks of a server: bounded in number and in memory.
pub struct PasswordWork {
    slots: tokio::sync::Semaphore,
    /// One argon2 buffer per slot, reused.
    buffers: Mutex<Vec<Vec<Block>>>,
    waiting: AtomicUsize,
}

impl std::fmt::Debug for PasswordWork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordWork").field("free", &self.slots.available_permits()).finish_non_exhaustive()
    }
}

/// Too many password checks are waiting: try again shortly.
#[derive(Debug, thiserror::Error)]
#[error("too many logins are being checked right now; try again in a moment")]
pub struct Busy;

impl Default for PasswordWork {
    fn default() -> Self {
        let slots = std::thread::available_parallelism().map_or(2, |n| n.get()).max(2);
        PasswordWork {
            slots: tokio::sync::Semaphore::new(slots),
            buffers: Mutex::new(Vec::new()),
            waiting: AtomicUsize::new(0),
        }
    }
}

impl PasswordWork {
    /// Runs `f` with an argon2 buffer when a slot is free (off the async
    /// threads), or refuses at once when too many wait.
    async fn run<T: Send + 'static>(
        &'static self,
        f: impl FnOnce(&mut Vec<Block>) -> T + Send + 'static,
    ) -> Result<T, Busy> {
        if self.waiting.fetch_add(1, Ordering::SeqCst) >= MAX_WAITING {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            return Err(Busy);
        }
        let permit = self.slots.acquire().await;
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        let _permit = permit.map_err(|_| Busy)?;
        let mut buf = self.buffers.lock().expect("buffers poisoned").pop().unwrap_or_default();
        let (r, buf) = tokio::task::spawn_blocking(move || {
            let r = f(&mut buf);
            (r, buf)
        })
        .await
        .map_err(|_| Busy)?;
        self.buffers.lock().expect("buffers poisoned").push(buf);
        Ok(r)
    }

    /// Checks `password` against a stored hash. With `None` (unknown user)
    /// it still spends the time of one check, so timing does not reveal
    /// which users exist.
    pub async fn verify(&'static self, password: String, stored: Option<String>) -> Result<bool, Busy> {
        self.run(move |buf| {
            let hash = stored.as_deref().unwrap_or(DUMMY);
            verify_with(password.as_bytes(), hash, buf) && stored.is_some()
        })
        .await
    }

    /// A new argon2id hash of `password`.
    pub async fn hash(&'static self, password: String) -> Result<anyhow::Result<String>, Busy> {
        self.run(move |buf| hash_with(password.as_bytes(), buf)).await
    }
}

/// The process's password work: one per server process (the server and the
/// tests that run it in-process share it).
pub fn work() -> &'static PasswordWork {
    static WORK: std::sync::OnceLock<PasswordWork> = std::sync::OnceLock::new();
    WORK.get_or_init(PasswordWork::default)
}

const DUMMY: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$Jt0pQbS0lRGvMYSLvdXkqe7xDgZzkTn0MQNbkvPV5Mw";

/// `buf` grown to `blocks` (it keeps its size for the next use).
fn memory(buf: &mut Vec<Block>, blocks: usize) -> Option<&mut [Block]> {
    if blocks > MAX_BLOCKS {
        return None;
    }
    if buf.len() < blocks {
        buf.resize(blocks, Block::default());
    }
    Some(&mut buf[..blocks])
}

fn verify_with(password: &[u8], stored: &str, buf: &mut Vec<Block>) -> bool {
    let Ok(hash) = PasswordHash::new(stored) else { return false };
    let (Ok(params), Ok(algorithm)) = (Params::try_from(&hash), Algorithm::try_from(hash.algorithm)) else {
        return false;
    };
    let Ok(version) = hash.version.map(Version::try_from).transpose() else { return false };
    let (Some(salt), Some(expected)) = (hash.salt, hash.hash) else { return false };
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else { return false };
    let Some(mem) = memory(buf, params.block_count()) else { return false };
    let argon = Argon2::new(algorithm, version.unwrap_or_default(), params);
    let mut out = vec![0u8; expected.len()];
    if argon.hash_password_into_with_memory(password, salt, &mut out, mem).is_err() {
        return false;
    }
    // Output's equality is constant-time.
    Output::new(&out).is_ok_and(|o| o == expected)
}

fn hash_with(password: &[u8], buf: &mut Vec<Block>) -> anyhow::Result<String> {
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>()).map_err(|e| anyhow::anyhow!("salt: {e}"))?;
    let params = Params::default();
    let mem = memory(buf, params.block_count()).ok_or_else(|| anyhow::anyhow!("argon2 parameters too large"))?;
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    let mut salt_bytes = [0u8; 64];
    let salt_raw = salt.as_salt().decode_b64(&mut salt_bytes).map_err(|e| anyhow::anyhow!("salt: {e}"))?;
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
        .hash_password_into_with_memory(password, salt_raw, &mut out, mem)
        .map_err(|e| anyhow::anyhow!("hashing the password: {e}"))?;
    let hash = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: (&params).try_into().map_err(|e| anyhow::anyhow!("argon2 parameters: {e}"))?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&out).map_err(|e| anyhow::anyhow!("argon2 output: {e}"))?),
    };
    Ok(hash.to_string())
}

/// A new argon2id hash of `password`, computed here (administration
/// commands, one at a time; the server goes through [`PasswordWork`]).
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    hash_with(password.as_bytes(), &mut Vec::new())
}

/// Checks `password` against a stored hash, here (see [`PasswordWork::verify`]).
pub fn verify_password(password: &str, stored: Option<&str>) -> bool {
    verify_with(password.as_bytes(), stored.unwrap_or(DUMMY), &mut Vec::new()) && stored.is_some()
}

/// A new bearer token (256 random bits, URL-safe base64).
pub fn new_token() -> String {
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// What the database stores of a token: its BLAKE3 hash (tokens have 256 bits
/// of entropy, so a fast hash is enough and a stolen database holds no token).
pub fn token_hash(token: &str) -> [u8; 32] {
    *blake3::hash(token.as_bytes()).as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_match_the_crates_own() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        let h = hash_password("pw-123").unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(verify_password("pw-123", Some(&h)));
        assert!(!verify_password("pw-124", Some(&h)));
        assert!(!verify_password("pw-123", None));
        assert!(!verify_password("pw-123", Some("not a hash")));
        // Hashes the crate made (all stored ones) verify here, and ours there.
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
        let theirs = Argon2::default().hash_password(b"pw-9", &salt).unwrap().to_string();
        assert!(verify_password("pw-9", Some(&theirs)));
        assert!(Argon2::default().verify_password(b"pw-123", &PasswordHash::new(&h).unwrap()).is_ok());
        // Parameters asking for more memory than a check may take: refused.
        let huge =
            "$argon2id$v=19$m=4000000,t=1,p=1$c29tZXNhbHRzb21lc2FsdA$Jt0pQbS0lRGvMYSLvdXkqe7xDgZzkTn0MQNbkvPV5Mw";
        assert!(!verify_password("x", Some(huge)));
    }
}
