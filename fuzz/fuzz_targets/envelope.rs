//! Envelope parsing: never panics, and an accepted envelope's bytes are themselves an envelope
//! that parses to the same event (the bytes we sign are stable under a second parse).
//!
//! Run: `cd fuzz && cargo +nightly fuzz run envelope`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mia_webhooks_model::{Event, EventCatalog};

fuzz_target!(|data: &[u8]| {
    let catalog =
        EventCatalog::with_extra(["project_deleted", "thing_happened"]).expect("valid names");
    match Event::parse(data, &catalog) {
        Ok(event) => {
            let again = Event::parse(event.bytes(), &catalog).expect("our own bytes parse");
            assert_eq!(
                again, event,
                "re-parsing the envelope bytes changed the event"
            );
            assert!(catalog.contains(event.name().as_str()));
            assert!(event.bytes().starts_with(b"{\"eventName\":\""));
        }
        Err(err) => {
            assert!(!err.field().is_empty(), "every error names a field");
            assert!(!err.message().is_empty());
        }
    }
});
