//! Identifiers: UUID v7 newtypes, so a webhook id cannot be passed where a delivery id is due.

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

use crate::ValidationError;

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(Uuid);

        impl $name {
            /// A new, time-ordered (UUID v7) id.
            pub fn new() -> Self {
                $name(Uuid::now_v7())
            }

            /// Wraps an existing UUID (read back from storage).
            pub fn from_uuid(uuid: Uuid) -> Self {
                $name(uuid)
            }

            /// The UUID inside.
            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0.hyphenated(), f)
            }
        }

        impl FromStr for $name {
            type Err = ValidationError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::try_parse(s).map($name).map_err(|_| {
                    ValidationError::invalid("id", concat!("id is not a valid ", $what, " id (a UUID)"))
                })
            }
        }
    };
}

uuid_id!(
    /// The id of a webhook.
    WebhookId,
    "webhook"
);
uuid_id!(
    /// The id of an ingested event.
    EventId,
    "event"
);
uuid_id!(
    /// The id of a delivery: one (event, webhook) pair. Sent as `X-Mia-Delivery` on every attempt.
    DeliveryId,
    "delivery"
);
uuid_id!(
    /// The id of an API token (not the token itself).
    TokenId,
    "token"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_print_and_parse_back() {
        let id = WebhookId::new();
        assert_eq!(id.to_string().parse::<WebhookId>().unwrap(), id);
    }

    #[test]
    fn ids_are_time_ordered() {
        let a = DeliveryId::new();
        let b = DeliveryId::new();
        assert!(a < b);
    }

    #[test]
    fn bad_id_names_the_field() {
        let err = "not-a-uuid".parse::<EventId>().unwrap_err();
        assert_eq!(err.field(), "id");
        assert!(err.message().contains("event id"));
    }
}
