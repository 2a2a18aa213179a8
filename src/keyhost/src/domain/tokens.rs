//! Bearer tokens: `gpt_` + 32 random bytes (URL-safe base64). Only their SHA-256 is stored.

use crate::store::{params, Connection, OptionalExtension};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use serde::Serialize;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::clock;
use crate::domain::identities::{self, Identity};

pub const TOKEN_PREFIX: &str = "gpt_";
/// Default lifetime of issued tokens: 30 days.
pub const DEFAULT_TTL_SECONDS: i64 = 30 * 24 * 3600;

/// A fresh token secret. Zeroized on drop.
pub fn generate() -> Zeroizing<String> {
    let mut raw = Zeroizing::new([0u8; 32]);
    rand::rngs::OsRng.fill_bytes(raw.as_mut());
    Zeroizing::new(format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(raw.as_ref())))
}

/// What the database stores instead of the token: SHA-256, hex.
pub fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A token's record (never its secret).
#[derive(Debug, Clone, Serialize)]
pub struct TokenInfo {
    pub token_id: i64,
    pub identity: String,
    #[serde(serialize_with = "crate::clock::serialize_micros")]
    pub created_at: i64,
    #[serde(serialize_with = "crate::clock::serialize_opt_micros")]
    pub expires_at: Option<i64>,
    #[serde(serialize_with = "crate::clock::serialize_opt_micros")]
    pub revoked_at: Option<i64>,
}

/// Store a new token for `identity`; returns its record and the secret (shown once).
pub fn issue(
    conn: &Connection,
    identity: &Identity,
    ttl_seconds: Option<i64>,
) -> crate::store::Result<(TokenInfo, Zeroizing<String>)> {
    let expires_at = ttl_seconds.map(|t| clock::now_micros().saturating_add(t.saturating_mul(1_000_000)));
    issue_until(conn, identity, expires_at)
}

/// [`issue`] with an absolute expiry (microseconds since the epoch; `None`: never).
pub fn issue_until(
    conn: &Connection,
    identity: &Identity,
    expires_at: Option<i64>,
) -> crate::store::Result<(TokenInfo, Zeroizing<String>)> {
    let secret = generate();
    let now = clock::now_micros();
    let new_id: i64 = conn.query_row(
        "INSERT INTO tokens (identity_id, hash, created_at, expires_at) VALUES (?1, ?2, ?3, ?4) RETURNING id",
        params![identity.id, hash(&secret), now, expires_at],
        crate::store::get0,
    )?;
    let info = TokenInfo {
        token_id: new_id,
        identity: identity.name.clone(),
        created_at: now,
        expires_at,
        revoked_at: None,
    };
    Ok((info, secret))
}

/// Result of checking a presented token.
pub enum TokenCheck {
    Valid(Identity),
    Unknown,
    Expired,
    Revoked,
}

pub fn authenticate(conn: &Connection, token: &str) -> crate::store::Result<TokenCheck> {
    let row: Option<(i64, Option<i64>, Option<i64>)> = conn
        .query_row(
            "SELECT identity_id, expires_at, revoked_at FROM tokens WHERE hash = ?1",
            [hash(token)],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    let Some((identity_id, expires_at, revoked_at)) = row else {
        return Ok(TokenCheck::Unknown);
    };
    if revoked_at.is_some() {
        return Ok(TokenCheck::Revoked);
    }
    if expires_at.is_some_and(|e| clock::now_micros() >= e) {
        return Ok(TokenCheck::Expired);
    }
    Ok(match identities::find_by_id(conn, identity_id)? {
        Some(i) => TokenCheck::Valid(i),
        None => TokenCheck::Unknown,
    })
}

pub fn list(conn: &Connection, identity: Option<&str>) -> crate::store::Result<Vec<TokenInfo>> {
    let mut st = conn.prepare(
        "SELECT t.id, i.name, t.created_at, t.expires_at, t.revoked_at
         FROM tokens t JOIN identities i ON i.id = t.identity_id
         WHERE CAST(?1 AS TEXT) IS NULL OR i.name = ?1 ORDER BY t.id",
    )?;
    let rows = st.query_map([identity], |r| {
        Ok(TokenInfo {
            token_id: r.get(0)?,
            identity: r.get(1)?,
            created_at: r.get(2)?,
            expires_at: r.get(3)?,
            revoked_at: r.get(4)?,
        })
    })?;
    rows.collect()
}

pub fn find(conn: &Connection, token_id: i64) -> crate::store::Result<Option<TokenInfo>> {
    Ok(list(conn, None)?.into_iter().find(|t| t.token_id == token_id))
}

/// Id and expiry of the token with this secret, if it is known and not revoked.
pub fn active_id(conn: &Connection, token: &str) -> crate::store::Result<Option<(i64, Option<i64>)>> {
    conn.query_row(
        "SELECT id, expires_at FROM tokens WHERE hash = ?1 AND revoked_at IS NULL",
        [hash(token)],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .optional()
}

/// Revoke a token now. Returns false if it does not exist.
pub fn revoke(conn: &Connection, token_id: i64) -> crate::store::Result<bool> {
    let n = conn.execute(
        "UPDATE tokens SET revoked_at = COALESCE(revoked_at, ?2) WHERE id = ?1",
        params![token_id, clock::now_micros()],
    )?;
    Ok(n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_hashed() {
        let a = generate();
        let b = generate();
        assert_ne!(*a, *b);
        assert!(a.starts_with(TOKEN_PREFIX));
        assert_eq!(a.len(), 4 + 43);
        assert_eq!(hash(&a).len(), 64);
        assert_ne!(hash(&a), hash(&b));
    }
}
