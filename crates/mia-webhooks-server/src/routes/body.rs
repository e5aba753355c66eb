//! Request bodies and query strings, read with errors that name the field.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// Reads a JSON body; errors name the field (`events[1]`, `proxy.url`) and never echo values.
pub(crate) fn json<T: DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
) -> Result<T, ApiError> {
    let bytes = body.map_err(body_rejection)?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_field(
            "invalid_json",
            "body",
            "the request body is empty; send a JSON object",
        ));
    }
    // Serde reads a struct from a JSON array too, field by field in order: `[...]` would slip
    // past `deny_unknown_fields` and turn each `null` of a patch into "clear".
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::bad_field(
            "invalid_json",
            "body",
            "the request body must be a JSON object",
        ));
    }
    let mut de = serde_json::Deserializer::from_slice(&bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        let text = inner.to_string();
        if let Some(rest) = text.strip_prefix("unknown field `") {
            let name = rest.split('`').next().unwrap_or_default();
            if name.is_empty() {
                let field = if path == "." { "body".to_owned() } else { path };
                return ApiError::bad_field(
                    "unknown_field",
                    field,
                    "a field with an empty name is not accepted",
                );
            }
            let field = if path == "." || path == name {
                name.to_owned()
            } else if path.ends_with(&format!(".{name}")) {
                path
            } else {
                format!("{path}.{name}")
            };
            return ApiError::bad_field(
                "unknown_field",
                field.clone(),
                format!("{field} is not a field of this request"),
            );
        }
        match inner.classify() {
            serde_json::error::Category::Data if path != "." => {
                let expected = text
                    .split(", expected ")
                    .nth(1)
                    .map(|e| e.split(" at line").next().unwrap_or(e));
                let message = match expected {
                    Some(expected) => format!("{path} has the wrong type: expected {expected}"),
                    None => format!("{path} is invalid"),
                };
                ApiError::bad_field("malformed_field", path, message)
            }
            serde_json::error::Category::Data => ApiError::bad_field(
                "invalid_json",
                "body",
                "the request body must be a JSON object",
            ),
            _ => ApiError::bad_field("invalid_json", "body", "the request body is not valid JSON"),
        }
    })?;
    de.end().map_err(|_| {
        ApiError::bad_field(
            "invalid_json",
            "body",
            "the request body has trailing characters after the JSON",
        )
    })?;
    Ok(value)
}

/// Maps axum's body rejection: over the limit is 413, anything else 400.
pub(crate) fn body_rejection(rejection: BytesRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            "the request body is larger than the server accepts",
        )
        .with_field("body")
    } else {
        ApiError::bad_field("invalid_body", "body", "the request body could not be read")
    }
}

/// Parses `limit` (1 to 100, default 50).
pub(crate) fn limit(raw: Option<&str>) -> Result<usize, ApiError> {
    match raw {
        None | Some("") => Ok(50),
        Some(text) => match text.parse::<usize>() {
            Ok(n @ 1..=100) => Ok(n),
            _ => Err(ApiError::bad_field(
                "invalid_query",
                "limit",
                "limit must be a whole number from 1 to 100",
            )),
        },
    }
}

/// Parses an id-shaped cursor.
pub(crate) fn cursor<T: std::str::FromStr>(raw: Option<&str>) -> Result<Option<T>, ApiError> {
    match raw {
        None | Some("") => Ok(None),
        Some(text) => text.parse::<T>().map(Some).map_err(|_| {
            ApiError::bad_field(
                "invalid_query",
                "cursor",
                "cursor is not one this server gave out",
            )
        }),
    }
}

/// Parses a path id.
pub(crate) fn path_id<T: std::str::FromStr>(raw: &str, what: &str) -> Result<T, ApiError> {
    // A malformed id cannot name anything: answer as for a missing one.
    raw.parse::<T>().map_err(|_| ApiError::not_found(what))
}
