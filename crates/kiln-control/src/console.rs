//! Console sign-in: an account's console password, kept only as an argon2 hash, and
//! the temporary credentials a sign-in gives (an access key, a secret and a session
//! token, for 12 hours), which SigV4 accepts until they expire or the session ends.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::Engine;
use kiln_store::accounts::{self, AccessKey, SessionLimits};
use rand::distributions::{Alphanumeric, DistString};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::{Cloud, Error, Result};

/// How long a session's credentials work.
pub const SESSION_HOURS: i64 = 12;

/// What a sign-in answers: the only copy of the secret and the token.
#[derive(Debug, Clone)]
pub struct SessionCredentials {
    pub access_key_id: String,
    pub secret: String,
    pub session_token: String,
    /// RFC 3339, UTC.
    pub expiration: String,
    pub account_id: String,
}

/// The hash a session token is kept and compared as.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Whether a session's credentials have expired at `now`.
pub fn expired(limits: &SessionLimits, now: chrono::DateTime<chrono::Utc>) -> bool {
    chrono::DateTime::parse_from_rfc3339(&limits.expires_at).map_or(true, |t| t <= now)
}

fn refused() -> Error {
    Error::Unauthorized("Incorrect account name or password.".into())
}

impl Cloud {
    /// Sets the console password of the account `name` (8 to 128 characters).
    pub fn set_console_password(&self, name: &str, password: &str) -> Result<()> {
        let n = password.chars().count();
        if !(8..=128).contains(&n) {
            return Err(Error::InvalidParameterValue("A console password has 8 to 128 characters".into()));
        }
        let salt = SaltString::generate(&mut OsRng);
        let hash = Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map_err(|e| Error::Crypto(e.to_string()))?
            .to_string();
        let found = self.store.write(|tx| Ok::<_, Error>(accounts::set_console_password(tx, name, &hash)?))?;
        if !found {
            return Err(Error::InvalidParameterValue(format!(
                "No account is named '{name}' (kiln account list shows them)"
            )));
        }
        Ok(())
    }

    /// Checks an account's name and console password and starts a session. Every
    /// refusal is the same, and as slow, whether the name, the password or a
    /// password at all is missing.
    pub fn sign_in(&self, name: &str, password: &str) -> Result<SessionCredentials> {
        let found = self.store.read(|c| Ok::<_, Error>(accounts::console_password(c, name)?))?;
        let (account_id, hash) = match found {
            Some((id, Some(hash))) => (Some(id), hash),
            // Verified against a hash of nothing, so that the answer takes as long.
            _ => (None, unknown_hash().to_owned()),
        };
        let parsed = PasswordHash::new(&hash).map_err(|e| Error::Crypto(e.to_string()))?;
        let ok = Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok();
        let Some(account_id) = account_id.filter(|_| ok) else { return Err(refused()) };
        let mut token = [0u8; 48];
        rand::thread_rng().fill_bytes(&mut token);
        let session_token = base64::engine::general_purpose::STANDARD.encode(token);
        let now = chrono::Utc::now();
        let expiration =
            (now + chrono::TimeDelta::hours(SESSION_HOURS)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let key = AccessKey {
            access_key_id: crate::accounts::access_key_id("ASIA"),
            account_id: account_id.clone(),
            secret: Alphanumeric.sample_string(&mut rand::thread_rng(), 40),
            session: Some(SessionLimits { token_hash: token_hash(&session_token), expires_at: expiration.clone() }),
        };
        self.store.write(|tx| {
            accounts::purge_sessions(tx, &now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))?;
            accounts::insert_session(tx, &key, &kiln_store::now())?;
            Ok::<_, Error>(())
        })?;
        Ok(SessionCredentials {
            access_key_id: key.access_key_id,
            secret: key.secret,
            session_token,
            expiration,
            account_id,
        })
    }

    /// Ends a session: its credentials stop working at once. False when no session
    /// has that key and token.
    pub fn sign_out(&self, access_key_id: &str, session_token: &str) -> Result<bool> {
        let hash = token_hash(session_token);
        self.store.write(|tx| Ok(accounts::delete_session(tx, access_key_id, &hash)?))
    }
}

/// An argon2 hash of a password nobody knows, made once.
fn unknown_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| {
        let salt = SaltString::generate(&mut OsRng);
        let mut secret = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut secret);
        Argon2::default().hash_password(&secret, &salt).map(|h| h.to_string()).unwrap_or_default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::World;

    #[test]
    fn a_password_signs_in_and_sign_out_ends_the_session() {
        let w = World::new("console");
        let name = w.cloud.accounts().expect("accounts")[0].name.clone();
        assert!(matches!(w.cloud.sign_in(&name, "hunter2hunter2"), Err(Error::Unauthorized(_))), "no password yet");
        assert!(w.cloud.set_console_password(&name, "short").is_err());
        w.cloud.set_console_password(&name, "hunter2hunter2").expect("password");
        assert!(matches!(w.cloud.sign_in(&name, "wrong-password"), Err(Error::Unauthorized(_))));
        assert!(matches!(w.cloud.sign_in("nobody", "hunter2hunter2"), Err(Error::Unauthorized(_))));
        let s = w.cloud.sign_in(&name, "hunter2hunter2").expect("sign in");
        assert!(s.access_key_id.starts_with("ASIA") && s.account_id == w.scope.account);
        let key = w.cloud.access_key(&s.access_key_id).expect("key").expect("found");
        let limits = key.session.expect("a session");
        assert_eq!(limits.token_hash, token_hash(&s.session_token));
        assert!(!expired(&limits, chrono::Utc::now()));
        assert!(expired(&limits, chrono::Utc::now() + chrono::TimeDelta::hours(SESSION_HOURS + 1)));
        assert!(!w.cloud.sign_out(&s.access_key_id, "not-the-token").expect("sign out"));
        assert!(w.cloud.sign_out(&s.access_key_id, &s.session_token).expect("sign out"));
        assert!(w.cloud.access_key(&s.access_key_id).expect("key").is_none(), "revoked");
        // The stored hash is argon2's, never the password.
        let stored = w.cloud.store.read(|c| accounts::console_password(c, &name)).expect("read");
        let hash = stored.and_then(|(_, h)| h).expect("hash");
        assert!(hash.starts_with("$argon2id$") && !hash.contains("hunter2"));
    }
}
