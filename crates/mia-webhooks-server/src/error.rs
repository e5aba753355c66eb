//! API errors: `{"error": {"code", "message", "field"}}` with the right status.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use mia_webhooks_model::{ErrorKind, ValidationError};
use mia_webhooks_store::StoreError;
use serde::Serialize;

/// An error answered to an API client.
///
/// Client errors say what is wrong and with which field. Server errors answer a generic message;
/// their cause goes to the log (never to the client, never with a secret).
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    field: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ErrorBody {
    error: ErrorDetail,
}

/// The body of every error response.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ErrorDetail {
    /// A stable machine-readable code, such as `invalid_field` or `not_found`.
    code: &'static str,
    /// What is wrong, for people.
    message: String,
    /// The request field concerned, such as `targetUrl` or `events[1]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<String>,
}

impl ApiError {
    /// A 4xx or 5xx error with a code and a message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            field: None,
        }
    }

    /// The same error about `field`.
    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// 400 about one field.
    pub fn bad_field(
        code: &'static str,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message).with_field(field)
    }

    /// 404: what does not exist and what the caller may not see answer the same.
    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }

    /// 401.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 403, for an authenticated caller whose role can never do this (an emitter listing
    /// webhooks). Resources out of reach answer 404 instead.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 500 with a generic message; the cause is logged here.
    pub fn internal(cause: &dyn std::error::Error) -> Self {
        tracing::error!(error = %ErrorChain(cause), "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; the cause is in the server log",
        )
    }

    /// 503: the database could not be reached or was too busy; the client may send again. The
    /// cause is logged here.
    pub fn unavailable(cause: &dyn std::error::Error) -> Self {
        tracing::warn!(error = %ErrorChain(cause), "database unavailable");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the database could not be reached; try again later",
        )
    }

    /// The status code.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The error code.
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// The field, if any.
    pub fn field(&self) -> Option<&str> {
        self.field.as_deref()
    }
}

impl From<ValidationError> for ApiError {
    fn from(err: ValidationError) -> Self {
        let code = match err.kind() {
            ErrorKind::Missing => "missing_field",
            ErrorKind::Malformed => "malformed_field",
            ErrorKind::Unknown => "unknown_value",
            _ => "invalid_field",
        };
        ApiError::bad_field(code, err.field().to_owned(), err.message().to_owned())
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Conflict(message) => {
                ApiError::new(StatusCode::CONFLICT, "conflict", message)
            }
            StoreError::Unavailable(_) => ApiError::unavailable(&err),
            other => ApiError::internal(&other),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message,
                field: self.field,
            },
        };
        (self.status, Json(body)).into_response()
    }
}

/// Displays an error with its sources: `a: b: c`.
pub(crate) struct ErrorChain<'a>(pub(crate) &'a dyn std::error::Error);

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(err) = source {
            write!(f, ": {err}")?;
            source = err.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreachable_database_is_503_and_other_store_errors_500_without_their_cause() {
        let cause = || -> Box<dyn std::error::Error + Send + Sync> {
            "connection refused to 127.0.0.1:5432 (password=hunter2)".into()
        };
        let unavailable = ApiError::from(StoreError::Unavailable(cause()));
        assert_eq!(unavailable.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(unavailable.code(), "unavailable");
        let failed = ApiError::from(StoreError::Database(cause()));
        assert_eq!(failed.status(), StatusCode::INTERNAL_SERVER_ERROR);
        for error in [unavailable, failed] {
            assert!(!error.message.contains("hunter2"), "{}", error.message);
            assert!(!error.message.contains("5432"), "{}", error.message);
        }
        let conflict = ApiError::from(StoreError::Conflict("an event with this id".into()));
        assert_eq!(conflict.status(), StatusCode::CONFLICT);
    }
}
