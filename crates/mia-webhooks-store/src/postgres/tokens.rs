//! API tokens: only their SHA-256 is stored, with the role and its scope.

use mia_webhooks_model::{Role, TokenId};
use uuid::Uuid;

use super::rows::{get, timestamp};
use super::{PostgresStore, db_error};
use crate::{ApiToken, Result, StoreError, TokenHash};

pub(super) async fn create(store: &PostgresStore, token: &ApiToken) -> Result<()> {
    let scope = token.role.scope();
    sqlx::query(
        "INSERT INTO api_tokens (id, hash, role, tenant_id, project_id, label, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(token.id.as_uuid())
    .bind(&token.hash.0[..])
    .bind(token.role.name())
    .bind(
        scope
            .as_ref()
            .and_then(|s| s.tenant_id())
            .map(|t| t.as_str()),
    )
    .bind(
        scope
            .as_ref()
            .and_then(|s| s.project_id())
            .map(|p| p.as_str()),
    )
    .bind(&token.label)
    .bind(token.created_at.as_millis())
    .execute(&store.pool)
    .await
    .map_err(db_error)?;
    Ok(())
}

pub(super) async fn find(store: &PostgresStore, hash: &TokenHash) -> Result<Option<ApiToken>> {
    let row = sqlx::query(
        "SELECT id, hash, role, tenant_id, project_id, label, created_at FROM api_tokens
         WHERE hash = $1",
    )
    .bind(&hash.0[..])
    .fetch_optional(&store.pool)
    .await
    .map_err(db_error)?;
    let Some(row) = row else {
        return Ok(None);
    };
    let id: Uuid = get(&row, "id")?;
    let role = Role::new(
        &get::<String>(&row, "role")?,
        get::<Option<String>>(&row, "tenant_id")?.as_deref(),
        get::<Option<String>>(&row, "project_id")?.as_deref(),
    )
    .map_err(|e| StoreError::Corrupt(format!("token {id}: {}", e.message())))?;
    Ok(Some(ApiToken {
        id: TokenId::from_uuid(id),
        hash: *hash,
        role,
        label: get(&row, "label")?,
        created_at: timestamp(&row, "created_at")?,
    }))
}

pub(super) async fn count(store: &PostgresStore) -> Result<u64> {
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM api_tokens")
        .fetch_one(&store.pool)
        .await
        .map_err(db_error)?;
    Ok(u64::try_from(n).unwrap_or(0))
}
