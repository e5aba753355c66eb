//! The one error type of the model: a field that failed validation, and why.

use std::borrow::Cow;
use std::fmt;

/// A value was rejected on construction.
///
/// Every error names the field it concerns (the wire name, such as `targetUrl` or
/// `payload.tenantId`) and says what is wrong in words the caller can act on. Messages never
/// contain a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ValidationError {
    field: Cow<'static, str>,
    kind: ErrorKind,
    message: String,
}

/// The broad class of a [`ValidationError`], for callers that map it to a status or a code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A required value is absent.
    Missing,
    /// The value has the wrong JSON type or cannot be parsed at all.
    Malformed,
    /// The value parses but breaks a rule (length, scheme, format, ...).
    Invalid,
    /// The value names something unknown (an event name outside the catalogue, a field).
    Unknown,
}

impl ErrorKind {
    /// A stable `snake_case` name for the kind, fit for an API error code.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Missing => "missing",
            ErrorKind::Malformed => "malformed",
            ErrorKind::Invalid => "invalid",
            ErrorKind::Unknown => "unknown",
        }
    }
}

impl ValidationError {
    /// Creates an error about `field`.
    pub fn new(
        field: impl Into<Cow<'static, str>>,
        kind: ErrorKind,
        message: impl Into<String>,
    ) -> Self {
        ValidationError {
            field: field.into(),
            kind,
            message: message.into(),
        }
    }

    pub(crate) fn invalid(field: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Self::new(field, ErrorKind::Invalid, message)
    }

    pub(crate) fn missing(field: impl Into<Cow<'static, str>>) -> Self {
        let field = field.into();
        let message = format!("{field} is required");
        Self::new(field, ErrorKind::Missing, message)
    }

    /// The wire name of the field, such as `targetUrl` or `payload.tenantId`.
    pub fn field(&self) -> &str {
        &self.field
    }

    /// The class of problem.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// What is wrong, as a sentence that starts with the field name.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Moves the error under a parent field: `url` becomes `proxy.url`.
    pub fn within(mut self, parent: &str) -> Self {
        self.field = Cow::Owned(format!("{parent}.{}", self.field));
        self
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ValidationError {}

/// The longest part of a rejected value an error message repeats, in characters.
const QUOTE_LIMIT: usize = 64;

/// `value` quoted for an error message, cut after [`QUOTE_LIMIT`] characters: a message about a
/// megabyte-long name stays one line.
pub(crate) fn quoted(value: &str) -> String {
    match value.char_indices().nth(QUOTE_LIMIT) {
        None => format!("{value:?}"),
        Some((cut, _)) => {
            let rest = value.len() - cut;
            format!("{:?}... ({rest} more bytes)", &value[..cut])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::quoted;

    #[test]
    fn quoted_values_are_cut_after_the_limit() {
        assert_eq!(quoted("tag_created"), "\"tag_created\"");
        let long = "a".repeat(1_000_000);
        let message = quoted(&long);
        assert_eq!(
            message,
            format!("\"{}\"... (999936 more bytes)", "a".repeat(64))
        );
        // Cut on a character boundary.
        let wide = "é".repeat(100);
        assert!(quoted(&wide).starts_with(&format!("\"{}\"...", "é".repeat(64))));
    }
}
