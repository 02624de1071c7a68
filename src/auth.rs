//! Authentication: model-API access keys, users with hashed passwords, signed bearer tokens.
//!
//! - Access keys (`?accesskey=`) are compared in constant time (`subtle`).
//! - Passwords are stored as Argon2id PHC strings (`streamscore hash-password` makes them).
//! - Tokens are HS256 JWTs with `sub`, `iat` and `exp`, signed with a key from configuration;
//!   without one, a random key is drawn at start (tokens then die with the process).

use argon2::password_hash::{PasswordHash, PasswordHasher, SaltString};
use argon2::Argon2;
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use subtle::ConstantTimeEq;

/// Why a credential was refused. Messages are safe to return to clients.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No credentials were sent.
    #[error("missing credentials: {0}")]
    Missing(&'static str),
    /// User unknown or password wrong (deliberately not saying which).
    #[error("invalid user name or password")]
    BadPassword,
    /// The token's signature does not verify or it is malformed.
    #[error("invalid token")]
    BadToken,
    /// The token is past its expiry.
    #[error("token expired")]
    Expired,
    /// The access key is wrong.
    #[error("invalid access key")]
    BadAccessKey,
}

/// Token claims.
#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    iat: i64,
    exp: i64,
}

/// Everything needed to check credentials and issue tokens.
pub struct Authenticator {
    access_keys: Vec<SecretString>,
    users: BTreeMap<String, String>,
    encoding: EncodingKey,
    decoding: DecodingKey,
    token_ttl_s: i64,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print keys or hashes.
        f.debug_struct("Authenticator")
            .field("access_keys", &self.access_keys.len())
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .field("token_ttl_s", &self.token_ttl_s)
            .finish()
    }
}

impl Authenticator {
    /// Builds an authenticator. `signing_key` empty means a random per-process key.
    pub fn new(
        access_keys: Vec<String>,
        users: BTreeMap<String, String>,
        signing_key: &[u8],
        token_ttl_s: i64,
    ) -> Self {
        let key: Vec<u8> = if signing_key.is_empty() {
            use rand::RngCore;
            let mut k = vec![0u8; 32];
            rand::rng().fill_bytes(&mut k);
            k
        } else {
            signing_key.to_vec()
        };
        Authenticator {
            access_keys: access_keys
                .into_iter()
                .filter(|k| !k.is_empty())
                .map(SecretString::from)
                .collect(),
            users,
            encoding: EncodingKey::from_secret(&key),
            decoding: DecodingKey::from_secret(&key),
            token_ttl_s,
        }
    }

    /// Checks a model-API access key in constant time (per configured key).
    pub fn check_access_key(&self, key: Option<&str>) -> Result<(), AuthError> {
        let key = key.ok_or(AuthError::Missing("accesskey query parameter"))?;
        let mut ok = subtle::Choice::from(0);
        for k in &self.access_keys {
            // Lengths leak through `ct_eq` on slices of different length; that is acceptable.
            ok |= k.expose_secret().as_bytes().ct_eq(key.as_bytes());
        }
        if bool::from(ok) {
            Ok(())
        } else {
            Err(AuthError::BadAccessKey)
        }
    }

    /// Verifies a user's password against its Argon2 hash.
    pub fn check_password(&self, user: &str, password: &str) -> Result<(), AuthError> {
        self.check_password_with(user, password, &mut PasswordMemory::default())
    }

    /// [`check_password`](Self::check_password) with Argon2's working memory supplied by the
    /// caller and kept between checks (a checking thread holds one), so a stream of checks
    /// allocates it once instead of once per check.
    pub fn check_password_with(
        &self,
        user: &str,
        password: &str,
        memory: &mut PasswordMemory,
    ) -> Result<(), AuthError> {
        // Unknown users cost a verification too, so timing does not tell who exists.
        let (hash, known) = match self.users.get(user) {
            Some(h) => (h.as_str(), true),
            None => (UNKNOWN_USER_HASH, false),
        };
        if memory.verify(hash, password.as_bytes()) && known {
            Ok(())
        } else {
            Err(AuthError::BadPassword)
        }
    }

    /// Issues a token for `user`, valid for the configured lifetime.
    pub fn issue(&self, user: &str) -> String {
        self.issue_at(user, chrono::Utc::now().timestamp())
    }

    fn issue_at(&self, user: &str, now: i64) -> String {
        let claims = Claims {
            sub: user.to_owned(),
            iat: now,
            exp: now + self.token_ttl_s,
        };
        // HS256 with an in-memory key cannot fail to encode.
        encode(&Header::new(Algorithm::HS256), &claims, &self.encoding).unwrap_or_default()
    }

    /// Verifies a bearer token; returns the user it was issued to.
    pub fn verify(&self, token: &str) -> Result<String, AuthError> {
        let mut v = Validation::new(Algorithm::HS256);
        v.leeway = 0;
        v.set_required_spec_claims(&["exp", "sub"]);
        match decode::<Claims>(token, &self.decoding, &v) {
            Ok(data) => Ok(data.claims.sub),
            Err(e) if matches!(e.kind(), jsonwebtoken::errors::ErrorKind::ExpiredSignature) => {
                Err(AuthError::Expired)
            }
            Err(_) => Err(AuthError::BadToken),
        }
    }
}

/// A hash with the default parameters that no password is checked against successfully
/// (an unknown user's check verifies against it, to take the same time).
const UNKNOWN_USER_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$vmF0KQl/p+ibecEv+hvXfQ$iu/RzyqUW9WH3kVVgBiugRpDIWcXKKrGvDGCmyBhB8g";

/// Largest Argon2 memory a configured hash may ask for (256 MiB).
const MAX_PASSWORD_MEMORY_KIB: u32 = 256 * 1024;

/// Argon2's working memory, reused from check to check.
#[derive(Default)]
pub struct PasswordMemory(Vec<argon2::Block>);

impl std::fmt::Debug for PasswordMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PasswordMemory({} blocks)", self.0.len())
    }
}

impl PasswordMemory {
    /// Whether `password` matches the PHC string `phc` (false for a malformed one, or one
    /// asking for more than 256 MiB).
    pub fn verify(&mut self, phc: &str, password: &[u8]) -> bool {
        self.try_verify(phc, password).unwrap_or(false)
    }

    fn try_verify(&mut self, phc: &str, password: &[u8]) -> Option<bool> {
        let parsed = PasswordHash::new(phc).ok()?;
        let algorithm = argon2::Algorithm::try_from(parsed.algorithm).ok()?;
        let version = match parsed.version {
            Some(v) => argon2::Version::try_from(v).ok()?,
            None => argon2::Version::default(),
        };
        let params = argon2::Params::try_from(&parsed).ok()?;
        if params.m_cost() > MAX_PASSWORD_MEMORY_KIB {
            return None;
        }
        let expected = parsed.hash?;
        let mut salt = [0u8; 64];
        let salt = parsed.salt?.decode_b64(&mut salt).ok()?;
        let blocks = params.block_count();
        if self.0.len() < blocks {
            self.0.resize(blocks, argon2::Block::default());
        }
        let mut out = vec![0u8; expected.len()];
        Argon2::new(algorithm, version, params)
            .hash_password_into_with_memory(password, salt, &mut out, &mut self.0[..blocks])
            .ok()?;
        Some(bool::from(out.as_slice().ct_eq(expected.as_bytes())))
    }
}

/// Hashes a password into an Argon2id PHC string for the `[auth.users]` table.
pub fn hash_password(password: &str) -> Result<String, argon2::password_hash::Error> {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)?
        .to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Authenticator {
        let users = BTreeMap::from([("admin".to_string(), hash_password("s3cret").unwrap())]);
        Authenticator::new(vec!["key-1".into(), "".into()], users, b"signing key", 3600)
    }

    #[test]
    fn access_keys() {
        let a = auth();
        assert_eq!(a.check_access_key(Some("key-1")), Ok(()));
        assert_eq!(
            a.check_access_key(Some("key-2")),
            Err(AuthError::BadAccessKey)
        );
        assert_eq!(
            a.check_access_key(Some("")),
            Err(AuthError::BadAccessKey),
            "empty keys never match"
        );
        assert!(matches!(
            a.check_access_key(None),
            Err(AuthError::Missing(_))
        ));
    }

    #[test]
    fn passwords() {
        let a = auth();
        assert_eq!(a.check_password("admin", "s3cret"), Ok(()));
        assert_eq!(
            a.check_password("admin", "wrong"),
            Err(AuthError::BadPassword)
        );
        assert_eq!(
            a.check_password("nobody", "s3cret"),
            Err(AuthError::BadPassword)
        );
    }

    #[test]
    fn tokens_verify_expire_and_resist_forgery() {
        let a = auth();
        let t = a.issue("admin");
        assert_eq!(a.verify(&t), Ok("admin".into()));
        let old = a.issue_at("admin", chrono::Utc::now().timestamp() - 7200);
        assert_eq!(a.verify(&old), Err(AuthError::Expired));
        let other = Authenticator::new(vec![], BTreeMap::new(), b"another key", 3600);
        assert_eq!(a.verify(&other.issue("admin")), Err(AuthError::BadToken));
        let mut forged = t.clone();
        forged.pop();
        forged.push(if t.ends_with('A') { 'B' } else { 'A' });
        assert_eq!(a.verify(&forged), Err(AuthError::BadToken));
        assert_eq!(a.verify("not a token"), Err(AuthError::BadToken));
    }
}
