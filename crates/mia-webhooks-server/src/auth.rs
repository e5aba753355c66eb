//! Bearer tokens: how they are made, stored (hashed) and checked.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mia_webhooks_model::{Role, Scope, Timestamp, TokenId};
use mia_webhooks_store::{ApiToken, Store, TokenHash};

use crate::error::ApiError;
use crate::state::AppState;

/// The prefix of every token this server makes, so a leaked one is recognisable.
pub const TOKEN_PREFIX: &str = "mwh_";

/// A new random token: the prefix and two v4 UUIDs (244 random bits), URL-safe base64.
pub fn generate_token() -> String {
    let mut bytes = [0u8; 32];
    // Randomness from the OS (uuid's v4 generator calls getrandom) keeps the dependency list
    // short. Each v4 UUID holds 122 random bits; the other 6 bits are its version and variant.
    bytes[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    bytes[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// Stores a new token for `role` and returns it: the only time it is seen in clear.
pub async fn create_token<S: Store>(
    store: &S,
    role: Role,
    label: &str,
) -> Result<String, mia_webhooks_store::StoreError> {
    let token = generate_token();
    install_token(store, &token, role, label).await?;
    Ok(token)
}

/// Stores the hash of a given token (an operator's `MIA_WEBHOOKS_ADMIN_TOKEN`) unless it is
/// already there.
pub async fn install_token<S: Store>(
    store: &S,
    token: &str,
    role: Role,
    label: &str,
) -> Result<(), mia_webhooks_store::StoreError> {
    let hash = TokenHash::of(token);
    if store.find_token(&hash).await?.is_some() {
        return Ok(());
    }
    let record = ApiToken {
        id: TokenId::new(),
        hash,
        role,
        label: label.to_owned(),
        created_at: Timestamp::now(),
    };
    store.create_token(&record).await
}

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller {
    /// What the caller's token may do.
    pub role: Role,
}

impl Caller {
    /// Checks that the caller manages `scope`. Out of reach answers 404, like a missing
    /// resource, so ids cannot be probed.
    /// An emitter manages nothing, so everything but `POST /api/events` is out of its reach.
    pub(crate) fn require_scope(&self, scope: &Scope, what: &str) -> Result<(), ApiError> {
        if self.role.can_manage(scope) {
            Ok(())
        } else {
            Err(ApiError::not_found(what))
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let header = parts.headers.get(AUTHORIZATION).ok_or_else(|| {
            ApiError::unauthorized("missing Authorization: Bearer <token> header")
        })?;
        let value = header
            .to_str()
            .map_err(|_| ApiError::unauthorized("malformed Authorization header"))?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ApiError::unauthorized("the Authorization header must be `Bearer <token>`")
            })?;
        let hash = TokenHash::of(token);
        if let Some(found) = state.inner.tokens.get(&hash) {
            return Ok(Caller { role: found.role });
        }
        match state.store().find_token(&hash).await? {
            Some(found) => {
                let role = found.role.clone();
                state.inner.tokens.put(found);
                Ok(Caller { role })
            }
            None => Err(ApiError::unauthorized("invalid token")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_prefixed_unique_and_long() {
        let a = generate_token();
        let b = generate_token();
        assert!(
            a.starts_with(TOKEN_PREFIX) && a.len() == TOKEN_PREFIX.len() + 43,
            "{a}"
        );
        assert_ne!(a, b);
    }
}
