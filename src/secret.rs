//! Secrets: generation, hashing and constant-time comparison.
//!
//! Client secrets, codes and refresh tokens are 256-bit random values, stored
//! only as SHA-256 (a fast hash is right for high-entropy values and keeps the
//! token endpoint fast). User passwords are low-entropy and use Argon2id.

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A fresh random secret of 32 bytes (256 bits), base64url without padding.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// SHA-256 of `value`, base64url without padding: what the database stores.
pub fn hash(value: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(value.as_bytes()))
}

/// Whether `presented` hashes to `stored`, compared in constant time.
pub fn verify_hash(presented: &str, stored: &str) -> bool {
    hash(presented).as_bytes().ct_eq(stored.as_bytes()).into()
}

/// Argon2id cost for new password hashes: 7 MiB, 5 passes, 1 lane — one of
/// the OWASP Password Storage Cheat Sheet's equal-strength settings (beside
/// 19 MiB × 2, the argon2 crate's default), chosen because memory, not time,
/// is what concurrent sign-ins exhaust. Stored hashes carry their own cost,
/// so hashes made with other settings keep verifying.
pub const ARGON2_MEMORY_KIB: u32 = 7 * 1024;
pub const ARGON2_PASSES: u32 = 5;

fn argon2() -> Result<Argon2<'static>, argon2::Error> {
    let params = argon2::Params::new(ARGON2_MEMORY_KIB, ARGON2_PASSES, 1, None)?;
    Ok(Argon2::new(
        argon2::Algorithm::Argon2id,
        argon2::Version::V0x13,
        params,
    ))
}

/// Argon2id PHC string for a user password.
pub fn hash_password(password: &str) -> Result<String, argon2::password_hash::Error> {
    let salt = SaltString::generate(&mut OsRng);
    Ok(argon2()?
        .hash_password(password.as_bytes(), &salt)?
        .to_string())
}

/// Checks a password against its stored Argon2id PHC string.
pub fn verify_password(password: &str, phc: &str) -> bool {
    // The hash's own parameters (in the PHC string) apply, not `argon2()`'s.
    match PasswordHash::new(phc) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_256_bit_and_distinct() {
        let a = random_token();
        assert_eq!(URL_SAFE_NO_PAD.decode(&a).unwrap().len(), 32);
        assert_ne!(a, random_token());
    }

    #[test]
    fn hash_verifies_only_the_same_value() {
        let s = random_token();
        let h = hash(&s);
        assert!(verify_hash(&s, &h));
        assert!(!verify_hash(&format!("{s}x"), &h));
        assert!(!verify_hash("", &h));
    }

    #[test]
    fn passwords_use_argon2id() {
        let phc = hash_password("correct horse").unwrap();
        assert!(phc.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &phc));
        assert!(!verify_password("wrong", &phc));
        assert!(!verify_password("x", "not a phc string"));
        assert!(phc.contains("$m=7168,t=5,p=1$"), "{phc}");
        // A hash made with other settings (the crate's default) still verifies.
        let salt = SaltString::generate(&mut OsRng);
        let old = Argon2::default()
            .hash_password(b"correct horse", &salt)
            .unwrap()
            .to_string();
        assert!(old.contains("$m=19456,t=2,p=1$"), "{old}");
        assert!(verify_password("correct horse", &old));
        assert!(!verify_password("wrong", &old));
    }
}
