//! Signing keys: ES256 key pairs in the keys directory, and the JWKS.
//!
//! Each key is one file `<kid>.json` (mode 0600) holding the private JWK and
//! when it starts signing. A rotated key is published at once and signs only
//! from `activates_at`, so resource servers holding a cached JWKS already know
//! it. A key that a newer key replaced stays published for the longest token
//! lifetime after that, so every live token still verifies. Every instance
//! sharing the directory re-reads it when its listing changes.

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use josekit::jwk::Jwk;
use josekit::jws::alg::ecdsa::EcdsaJwsVerifier;
use josekit::jws::ES256;
use serde::{Deserialize, Serialize};

use crate::config::MAX_ACCESS_TOKEN_TTL;

/// How long a replaced key stays in the JWKS: the longest access token
/// lifetime plus a minute of clock skew.
pub const RETIRED_KEY_GRACE_SECS: i64 = MAX_ACCESS_TOKEN_TTL as i64 + 60;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("keys_dir {path}: {message}")]
    Io { path: String, message: String },
    #[error("key {kid}: {message}")]
    Bad { kid: String, message: String },
    #[error("no signing key is active yet")]
    NoActiveKey,
    #[error("signing failed: {0}")]
    Sign(String),
}

/// Why a token is not valid; each case is its own clear reason, for token
/// exchange, introspection and `mandate token verify`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenInvalid {
    #[error("not a well-formed JWT")]
    Malformed,
    #[error("alg must be ES256")]
    UnsupportedAlg,
    #[error("typ is not at+jwt")]
    WrongTyp,
    #[error("signed by a key this issuer does not publish")]
    UnknownKey,
    #[error("the signature does not verify")]
    BadSignature,
    #[error("the claims are malformed")]
    BadClaims,
    #[error("issued by another issuer")]
    WrongIssuer,
    #[error("expired")]
    Expired,
    #[error("not yet valid")]
    NotYetValid,
}

fn io(path: &Path, e: impl std::fmt::Display) -> KeyError {
    KeyError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// The file format of one key.
#[derive(Serialize, Deserialize)]
struct KeyFile {
    kid: String,
    alg: String,
    created_at: i64,
    /// Creation in milliseconds: orders keys that activate in the same second.
    #[serde(default)]
    created_at_ms: i64,
    activates_at: i64,
    private_jwk: serde_json::Value,
}

struct Key {
    kid: String,
    created_at: i64,
    created_at_ms: i64,
    activates_at: i64,
    /// ring's P-256 signer: ES256's fixed-width `r || s` (RFC 7518 §3.4)
    /// from a key set up once, where josekit's OpenSSL signer sets up its
    /// contexts again on every call (a third of the token endpoint's CPU).
    signer: ring::signature::EcdsaKeyPair,
    verifier: EcdsaJwsVerifier,
    public_jwk: serde_json::Value,
    /// [`jws_header`] for access tokens, encoded once.
    at_jwt_header: String,
}

/// What `keys list` shows for each key.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct KeyInfo {
    pub kid: String,
    pub alg: &'static str,
    pub created_at: i64,
    pub activates_at: i64,
    /// `pending` (published, not signing yet), `active` (signs), `retired`
    /// (published for live tokens), `expired` (no longer published).
    pub status: &'static str,
    pub published: bool,
}

struct Loaded {
    names: BTreeSet<String>,
    keys: Vec<Key>,
}

/// The set of keys of one keys directory, reloaded when the directory changes.
#[derive(Clone)]
pub struct KeyRing {
    dir: PathBuf,
    loaded: Arc<RwLock<Arc<Loaded>>>,
}

impl KeyRing {
    /// Opens `dir`, creating it (mode 0700) and a first active key when it
    /// holds none.
    pub fn open(dir: &Path, now: i64) -> Result<KeyRing, KeyError> {
        if !dir.exists() {
            fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(|e| io(dir, e))?;
        }
        let mut loaded = load(dir)?;
        if loaded.keys.is_empty() {
            // Several instances may start on one empty directory at once: the
            // first to hold the lock creates the key, the others load it.
            let lock_path = dir.join(".init.lock");
            let lock = fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .mode(0o600)
                .open(&lock_path)
                .map_err(|e| io(&lock_path, e))?;
            lock.lock().map_err(|e| io(&lock_path, e))?;
            loaded = load(dir)?;
            if loaded.keys.is_empty() {
                write_new_key(dir, now, now)?;
                loaded = load(dir)?;
            }
            drop(lock);
        }
        Ok(KeyRing {
            dir: dir.to_path_buf(),
            loaded: Arc::new(RwLock::new(Arc::new(loaded))),
        })
    }

    /// Opens `dir` for reading only: it must exist and hold at least one key.
    /// Nothing is created (read-only commands use this).
    pub fn open_existing(dir: &Path) -> Result<KeyRing, KeyError> {
        if !dir.is_dir() {
            return Err(io(dir, "no such directory (`mandate serve` creates it)"));
        }
        let loaded = load(dir)?;
        if loaded.keys.is_empty() {
            return Err(io(dir, "holds no signing keys"));
        }
        Ok(KeyRing {
            dir: dir.to_path_buf(),
            loaded: Arc::new(RwLock::new(Arc::new(loaded))),
        })
    }

    fn snapshot(&self) -> Arc<Loaded> {
        match self.loaded.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Re-reads the directory if its key files changed (another instance or
    /// `mandate keys rotate` wrote one). Cheap when nothing changed.
    pub fn refresh(&self) -> Result<bool, KeyError> {
        let names = key_names(&self.dir)?;
        if names == self.snapshot().names {
            return Ok(false);
        }
        let fresh = load(&self.dir)?;
        if fresh.keys.is_empty() {
            // Never drop to no keys because a directory was emptied under us.
            return Ok(false);
        }
        let mut g = match self.loaded.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        *g = Arc::new(fresh);
        Ok(true)
    }

    /// Signs `payload` (the JSON claims) as a compact JWS with header
    /// `{"typ", "alg": "ES256", "kid"}` by the active key. The signature is
    /// josekit's (OpenSSL); only the compact framing (RFC 7515 §7.1) is here.
    pub fn sign(&self, typ: &str, payload: &[u8], now: i64) -> Result<String, KeyError> {
        let snap = self.snapshot();
        let key = active(&snap.keys, now).ok_or(KeyError::NoActiveKey)?;
        let mut out = if typ == ACCESS_TOKEN_TYP {
            key.at_jwt_header.clone()
        } else {
            jws_header(typ, &key.kid)
        };
        out.push('.');
        out.push_str(&b64(payload));
        let signature = key
            .signer
            .sign(&ring::rand::SystemRandom::new(), out.as_bytes())
            .map_err(|e| KeyError::Sign(e.to_string()))?;
        out.push('.');
        out.push_str(&b64(signature.as_ref()));
        Ok(out)
    }

    /// Verifies a compact JWS signed by one of this ring's published keys and
    /// returns its payload. `alg` must be ES256 (never `none`, never another
    /// algorithm: the algorithm is fixed by the key, not by the token), `typ`
    /// one of `typs`, the `kid` published, no `crit` header; then the
    /// signature. Claim checks (`iss`, `exp`, `aud`) are the caller's.
    pub fn verify(&self, token: &str, typs: &[&str], now: i64) -> Result<Vec<u8>, TokenInvalid> {
        let snap = self.snapshot();
        verify_compact(token, typs, |kid| {
            snap.keys
                .iter()
                .find(|k| Some(k.kid.as_str()) == kid && status(&snap.keys, k, now).1)
                .map(|k| &k.verifier as &dyn josekit::jws::JwsVerifier)
        })
    }

    /// The JWK Set of every published key (RFC 7517 §5).
    pub fn jwks(&self, now: i64) -> serde_json::Value {
        let snap = self.snapshot();
        let keys: Vec<_> = snap
            .keys
            .iter()
            .filter(|k| status(&snap.keys, k, now).1)
            .map(|k| k.public_jwk.clone())
            .collect();
        serde_json::json!({ "keys": keys })
    }

    /// Every key in the directory with its status.
    pub fn list(&self, now: i64) -> Vec<KeyInfo> {
        let snap = self.snapshot();
        snap.keys
            .iter()
            .map(|k| {
                let (status, published) = status(&snap.keys, k, now);
                KeyInfo {
                    kid: k.kid.clone(),
                    alg: "ES256",
                    created_at: k.created_at,
                    activates_at: k.activates_at,
                    status,
                    published,
                }
            })
            .collect()
    }

    /// Adds a new key that signs from `now + delay_secs`, and deletes the files
    /// of keys that are no longer published. Returns the new key's id.
    pub fn rotate(&self, now: i64, delay_secs: u64) -> Result<String, KeyError> {
        let kid = write_new_key(&self.dir, now, now + delay_secs as i64)?;
        self.refresh()?;
        for info in self.list(now) {
            if info.status == "expired" {
                let path = self.dir.join(format!("{}.json", info.kid));
                fs::remove_file(&path).map_err(|e| io(&path, e))?;
            }
        }
        self.refresh()?;
        Ok(kid)
    }
}

impl KeyRing {
    /// Removes the key `kid` (one that was never used: `keys rotate` takes
    /// back a key whose audit event could not be written).
    pub fn discard(&self, kid: &str) -> Result<(), KeyError> {
        let path = self.dir.join(format!("{kid}.json"));
        fs::remove_file(&path).map_err(|e| io(&path, e))?;
        self.refresh()?;
        Ok(())
    }
}

impl Key {
    /// Succession order: later activation wins; within one second, the key
    /// created later (a `rotate --now` right after start replaces the first key).
    fn order(&self) -> (i64, i64, &str) {
        (self.activates_at, self.created_at_ms, &self.kid)
    }
}

/// Verifies a compact JWS and returns its payload: `alg` must be ES256
/// (never `none`, never another algorithm: the algorithm is fixed by the key,
/// not by the token), `typ` one of `typs`, no `crit` header, and `find` must
/// know the `kid`; then the signature. Shared by this key ring and the
/// resource-server module's JWKS cache.
pub fn verify_compact<'k>(
    token: &str,
    typs: &[&str],
    find: impl FnOnce(Option<&str>) -> Option<&'k dyn josekit::jws::JwsVerifier>,
) -> Result<Vec<u8>, TokenInvalid> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenInvalid::Malformed);
    };
    let header: serde_json::Map<String, serde_json::Value> = unb64(h)
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(TokenInvalid::Malformed)?;
    if header.get("alg").and_then(|v| v.as_str()) != Some("ES256") {
        return Err(TokenInvalid::UnsupportedAlg);
    }
    // RFC 7515 §4.1.11: a `crit` extension we do not understand makes the JWS invalid.
    if header.contains_key("crit") {
        return Err(TokenInvalid::Malformed);
    }
    let typ = header.get("typ").and_then(|v| v.as_str());
    if !typ.is_some_and(|t| typs.contains(&t)) {
        return Err(TokenInvalid::WrongTyp);
    }
    let verifier =
        find(header.get("kid").and_then(|v| v.as_str())).ok_or(TokenInvalid::UnknownKey)?;
    let signature = unb64(sig).ok_or(TokenInvalid::Malformed)?;
    let signed = &token[..h.len() + 1 + p.len()];
    verifier
        .verify(signed.as_bytes(), &signature)
        .map_err(|_| TokenInvalid::BadSignature)?;
    unb64(p).ok_or(TokenInvalid::Malformed)
}

/// The `typ` whose header each key keeps encoded (RFC 9068 access tokens).
const ACCESS_TOKEN_TYP: &str = "at+jwt";

/// The base64url JWS protected header for `typ` and `kid`.
fn jws_header(typ: &str, kid: &str) -> String {
    b64(serde_json::json!({"typ": typ, "alg": "ES256", "kid": kid})
        .to_string()
        .as_bytes())
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn unb64(text: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .ok()
}

/// The key that signs at `now`: the latest activated one.
fn active(keys: &[Key], now: i64) -> Option<&Key> {
    keys.iter()
        .filter(|k| k.activates_at <= now)
        .max_by(|a, b| a.order().cmp(&b.order()))
}

/// (`status`, `published`) of `k` at `now`.
fn status(keys: &[Key], k: &Key, now: i64) -> (&'static str, bool) {
    if k.activates_at > now {
        return ("pending", true);
    }
    let Some(current) = active(keys, now) else {
        return ("pending", true);
    };
    if current.kid == k.kid {
        return ("active", true);
    }
    // Replaced when the next key (by activation) after `k` activated.
    let replaced_at = keys
        .iter()
        .filter(|o| o.order() > k.order() && o.activates_at <= now)
        .map(|o| o.activates_at)
        .min()
        .unwrap_or(now);
    if now < replaced_at + RETIRED_KEY_GRACE_SECS {
        ("retired", true)
    } else {
        ("expired", false)
    }
}

fn key_names(dir: &Path) -> Result<BTreeSet<String>, KeyError> {
    let mut names = BTreeSet::new();
    for entry in fs::read_dir(dir).map_err(|e| io(dir, e))? {
        let entry = entry.map_err(|e| io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".json") && !name.starts_with('.') {
            names.insert(name);
        }
    }
    Ok(names)
}

fn load(dir: &Path) -> Result<Loaded, KeyError> {
    let names = key_names(dir)?;
    let mut keys = Vec::new();
    for name in &names {
        let path = dir.join(name);
        let meta = fs::metadata(&path).map_err(|e| io(&path, e))?;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(io(
                &path,
                format!(
                    "private key file is readable by others (mode {:o}); run chmod 600",
                    meta.permissions().mode() & 0o777
                ),
            ));
        }
        let text = fs::read(&path).map_err(|e| io(&path, e))?;
        let file: KeyFile = serde_json::from_slice(&text).map_err(|e| io(&path, e))?;
        keys.push(parse_key(file)?);
    }
    Ok(Loaded { names, keys })
}

fn parse_key(file: KeyFile) -> Result<Key, KeyError> {
    let bad = |m: String| KeyError::Bad {
        kid: file.kid.clone(),
        message: m,
    };
    if file.alg != "ES256" {
        return Err(bad(format!("unsupported alg {}", file.alg)));
    }
    let map = match &file.private_jwk {
        serde_json::Value::Object(m) => m.clone(),
        _ => return Err(bad("private_jwk is not an object".into())),
    };
    let jwk = Jwk::from_map(map).map_err(|e| bad(e.to_string()))?;
    // Parsed by josekit first: a malformed JWK fails there with its reason.
    ES256
        .signer_from_jwk(&jwk)
        .map_err(|e| bad(e.to_string()))?;
    let signer = ring_signer(&jwk).map_err(bad)?;
    let mut public = jwk.to_public_key().map_err(|e| bad(e.to_string()))?;
    let verifier = ES256
        .verifier_from_jwk(&public)
        .map_err(|e| bad(e.to_string()))?;
    public.set_key_id(&file.kid);
    public.set_algorithm("ES256");
    public.set_key_use("sig");
    let public_jwk = serde_json::Value::Object(public.as_ref().clone());
    Ok(Key {
        at_jwt_header: jws_header(ACCESS_TOKEN_TYP, &file.kid),
        kid: file.kid,
        created_at: file.created_at,
        created_at_ms: file.created_at_ms,
        activates_at: file.activates_at,
        signer,
        verifier,
        public_jwk,
    })
}

/// ring's signer for the P-256 private JWK `jwk` (`d`, `x`, `y`; RFC 7518 §6.2).
fn ring_signer(jwk: &Jwk) -> Result<ring::signature::EcdsaKeyPair, String> {
    let member = |name: &str| {
        jwk.parameter(name)
            .and_then(|v| v.as_str())
            .and_then(unb64)
            .filter(|b| b.len() == 32)
            .ok_or_else(|| format!("private_jwk.{name} is not a 32-byte base64url value"))
    };
    let (d, x, y) = (member("d")?, member("x")?, member("y")?);
    // SEC 1 §2.3.3: the uncompressed point, 0x04 || x || y.
    let mut public = Vec::with_capacity(65);
    public.push(0x04);
    public.extend_from_slice(&x);
    public.extend_from_slice(&y);
    ring::signature::EcdsaKeyPair::from_private_key_and_public_key(
        &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &d,
        &public,
        &ring::rand::SystemRandom::new(),
    )
    .map_err(|e| format!("private_jwk is not a consistent P-256 key pair: {e}"))
}

/// Generates a key pair and writes it with mode 0600 (atomically: a temp file
/// renamed into place, so a reader never sees half a key).
fn write_new_key(dir: &Path, now: i64, activates_at: i64) -> Result<String, KeyError> {
    let pair = ES256
        .generate_key_pair()
        .map_err(|e| KeyError::Sign(e.to_string()))?;
    let kid = uuid::Uuid::new_v4().simple().to_string();
    let mut private = pair.to_jwk_key_pair();
    private.set_key_id(&kid);
    let file = KeyFile {
        kid: kid.clone(),
        alg: "ES256".into(),
        created_at: now,
        created_at_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or_default(),
        activates_at,
        private_jwk: serde_json::Value::Object(private.as_ref().clone()),
    };
    let body = serde_json::to_vec_pretty(&file).map_err(|e| KeyError::Sign(e.to_string()))?;
    let tmp = dir.join(format!(".{kid}.tmp"));
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| io(&tmp, e))?;
    f.write_all(&body).map_err(|e| io(&tmp, e))?;
    f.sync_all().map_err(|e| io(&tmp, e))?;
    let path = dir.join(format!("{kid}.json"));
    fs::rename(&tmp, &path).map_err(|e| io(&path, e))?;
    Ok(kid)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_800_000_000;

    #[test]
    fn first_open_creates_one_private_active_key() {
        let dir = tempfile::tempdir().unwrap();
        let ring = KeyRing::open(dir.path(), T0).unwrap();
        let keys = ring.list(T0);
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].status, "active");
        let path = dir.path().join(format!("{}.json", keys[0].kid));
        let mode = fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let jwks = ring.jwks(T0);
        assert_eq!(jwks["keys"][0]["kid"], keys[0].kid.as_str());
        assert_eq!(jwks["keys"][0]["use"], "sig");
        assert!(
            jwks["keys"][0].get("d").is_none(),
            "private part must not be published"
        );
    }

    //  * a rotated key is published before it signs
    //  * the old key signs until activation, then stays published for the grace period
    //  * after the grace period the old key is dropped
    #[test]
    fn rotation_prepublishes_then_retires() {
        let dir = tempfile::tempdir().unwrap();
        let ring = KeyRing::open(dir.path(), T0).unwrap();
        let old = ring.list(T0)[0].kid.clone();
        let new = ring.rotate(T0, 600).unwrap();
        let status = |now| {
            ring.list(now)
                .into_iter()
                .map(|k| (k.kid, k.status))
                .collect::<std::collections::HashMap<_, _>>()
        };
        assert_eq!(status(T0)[&new], "pending");
        assert_eq!(status(T0)[&old], "active");
        assert_eq!(ring.jwks(T0)["keys"].as_array().unwrap().len(), 2);
        let at = T0 + 600;
        assert_eq!(status(at)[&new], "active");
        assert_eq!(status(at)[&old], "retired");
        let late = at + RETIRED_KEY_GRACE_SECS;
        assert_eq!(status(late)[&old], "expired");
        assert_eq!(ring.jwks(late)["keys"].as_array().unwrap().len(), 1);
    }

    /// `rotate --now` in the same second as the first key still takes over.
    #[test]
    fn rotation_now_in_the_same_second_signs_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let ring = KeyRing::open(dir.path(), T0).unwrap();
        let new = ring.rotate(T0, 0).unwrap();
        let active: Vec<_> = ring
            .list(T0)
            .into_iter()
            .filter(|k| k.status == "active")
            .collect();
        assert_eq!(active.len(), 1);
        assert_eq!(active[0].kid, new);
    }

    //  * a tampered payload
    //  * `alg: none`, and HS256 keyed with the public key
    //  * a key this ring does not publish
    //  * the wrong `typ`
    //  * not three parts
    #[test]
    fn verify_accepts_only_own_es256_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let ring = KeyRing::open(dir.path(), T0).unwrap();
        let token = ring.sign("at+jwt", br#"{"sub":"agent"}"#, T0).unwrap();
        assert_eq!(
            ring.verify(&token, &["at+jwt"], T0).unwrap(),
            br#"{"sub":"agent"}"#
        );
        assert_eq!(
            ring.verify(&token, &["JWT"], T0),
            Err(TokenInvalid::WrongTyp)
        );

        let parts: Vec<&str> = token.split('.').collect();
        let forged = b64(br#"{"sub":"admin"}"#);
        let tampered = format!("{}.{}.{}", parts[0], forged, parts[2]);
        assert_eq!(
            ring.verify(&tampered, &["at+jwt"], T0),
            Err(TokenInvalid::BadSignature)
        );
        let none = b64(br#"{"alg":"none","typ":"at+jwt"}"#);
        assert_eq!(
            ring.verify(&format!("{none}.{}.", parts[1]), &["at+jwt"], T0),
            Err(TokenInvalid::UnsupportedAlg)
        );
        let hs = b64(br#"{"alg":"HS256","typ":"at+jwt"}"#);
        assert_eq!(
            ring.verify(&format!("{hs}.{}.{}", parts[1], parts[2]), &["at+jwt"], T0),
            Err(TokenInvalid::UnsupportedAlg)
        );
        assert_eq!(
            ring.verify("abc.def", &["at+jwt"], T0),
            Err(TokenInvalid::Malformed)
        );

        let other_dir = tempfile::tempdir().unwrap();
        let other = KeyRing::open(other_dir.path(), T0).unwrap();
        let foreign = other.sign("at+jwt", br#"{"sub":"agent"}"#, T0).unwrap();
        assert_eq!(
            ring.verify(&foreign, &["at+jwt"], T0),
            Err(TokenInvalid::UnknownKey)
        );
    }

    /// Read-only opening creates nothing.
    #[test]
    fn open_existing_creates_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("keys");
        assert!(KeyRing::open_existing(&missing).is_err());
        assert!(!missing.exists());
        fs::create_dir(&missing).unwrap();
        assert!(KeyRing::open_existing(&missing).is_err());
        assert_eq!(fs::read_dir(&missing).unwrap().count(), 0);
        KeyRing::open(&missing, T0).unwrap();
        assert_eq!(KeyRing::open_existing(&missing).unwrap().list(T0).len(), 1);
    }

    /// Instances starting together on an empty directory share one first key.
    #[test]
    fn concurrent_first_start_creates_one_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let p = path.clone();
                std::thread::spawn(move || KeyRing::open(&p, T0).unwrap().list(T0)[0].kid.clone())
            })
            .collect();
        let kids: std::collections::HashSet<String> =
            threads.into_iter().map(|t| t.join().unwrap()).collect();
        assert_eq!(kids.len(), 1);
        assert_eq!(key_names(&path).unwrap().len(), 1);
    }

    #[test]
    fn world_readable_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ring = KeyRing::open(dir.path(), T0).unwrap();
        let kid = ring.list(T0)[0].kid.clone();
        let path = dir.path().join(format!("{kid}.json"));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let e = KeyRing::open(dir.path(), T0).err().unwrap();
        assert!(e.to_string().contains("chmod 600"), "{e}");
    }
}
