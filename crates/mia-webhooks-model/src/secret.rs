//! The write-only secret that signs a webhook's deliveries.

use std::fmt;

use crate::ValidationError;

/// The longest secret accepted, in bytes.
pub const MAX_SECRET_LEN: usize = 1024;

/// A webhook secret: 1 to 1024 bytes.
///
/// It is write-only by construction: `Debug` prints `Secret(***)`, and there is no `Display`,
/// no `Serialize` and no `PartialEq` (comparing secrets is the signature crate's job, in constant
/// time). The bytes leave only through [`Secret::expose`], for signing and for storage.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// Validates a secret; errors name the field `secret` and never echo the value.
    pub fn new(secret: impl Into<String>) -> Result<Self, ValidationError> {
        let secret = secret.into();
        if secret.is_empty() {
            return Err(ValidationError::invalid(
                "secret",
                "secret must not be empty",
            ));
        }
        if secret.len() > MAX_SECRET_LEN {
            return Err(ValidationError::invalid(
                "secret",
                format!(
                    "secret is {} bytes long; the limit is {MAX_SECRET_LEN}",
                    secret.len()
                ),
            ));
        }
        Ok(Secret(secret))
    }

    /// The secret's bytes, for signing and for storage. Never log or return them.
    pub fn expose(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// The secret as text, for storage.
    pub fn expose_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_bounds() {
        assert!(Secret::new("s").is_ok());
        assert!(Secret::new("é".repeat(512)).is_ok());
        assert_eq!(Secret::new("").unwrap_err().field(), "secret");
        let long = "x".repeat(1025);
        let err = Secret::new(long.clone()).unwrap_err();
        assert_eq!(err.field(), "secret");
        assert!(!err.message().contains(&long));
    }

    #[test]
    fn debug_is_redacted() {
        let secret = Secret::new("hunter2").unwrap();
        assert_eq!(format!("{secret:?}"), "Secret(***)");
        assert_eq!(format!("{:?}", Some(secret)), "Some(Secret(***))");
    }
}
