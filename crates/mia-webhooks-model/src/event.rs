//! The event envelope `{eventName, eventTimestamp, payload}`: parsed once, serialized once.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::{
    ErrorKind, EventCatalog, EventName, EventRouting, ProjectId, TenantId, Timestamp,
    ValidationError,
};

/// An ingested event: its name, time, routing and the exact envelope bytes that every attempt
/// of every delivery sends and signs.
///
/// The bytes are made once, here, as the compact envelope
/// `{"eventName":...,"eventTimestamp":...,"payload":...}` with the payload's own text kept byte for
/// byte as the emitter sent it (key order and number formatting included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    name: EventName,
    timestamp: Timestamp,
    routing: EventRouting,
    bytes: Vec<u8>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEnvelope<'a> {
    #[serde(rename = "eventName", default)]
    event_name: Option<Value>,
    #[serde(rename = "eventTimestamp", default)]
    event_timestamp: Option<Value>,
    #[serde(borrow, default)]
    payload: Option<&'a RawValue>,
}

impl Event {
    /// Parses an envelope sent by an emitter and checks it against the catalogue: the name must be
    /// catalogued and a catalogued payload schema must hold.
    ///
    /// Errors name the field: `eventName`, `eventTimestamp`, `payload`, `payload.tenantId`, ...
    pub fn parse(bytes: &[u8], catalog: &EventCatalog) -> Result<Event, ValidationError> {
        // serde would also read a struct from a JSON array; an envelope is an object only.
        if bytes
            .iter()
            .find(|b| !b.is_ascii_whitespace())
            .is_some_and(|&b| b == b'[')
        {
            return Err(malformed("body", "the body must be a JSON object"));
        }
        let raw: RawEnvelope<'_> = serde_json::from_slice(bytes).map_err(json_error)?;

        let name = match raw.event_name {
            None | Some(Value::Null) => return Err(ValidationError::missing("eventName")),
            Some(Value::String(name)) => catalog.resolve(&name, "eventName")?,
            Some(_) => return Err(malformed("eventName", "eventName must be a string")),
        };
        let timestamp = match raw.event_timestamp {
            None | Some(Value::Null) => return Err(ValidationError::missing("eventTimestamp")),
            Some(Value::Number(n)) => match n.as_i64() {
                Some(ms) if ms >= 0 => Timestamp::from_millis(ms),
                _ => {
                    return Err(ValidationError::invalid(
                        "eventTimestamp",
                        "eventTimestamp must be a non-negative integer of Unix epoch milliseconds",
                    ));
                }
            },
            Some(_) => {
                return Err(malformed(
                    "eventTimestamp",
                    "eventTimestamp must be a number of Unix epoch milliseconds",
                ));
            }
        };
        let payload_raw = match raw.payload {
            None => return Err(ValidationError::missing("payload")),
            Some(raw) => raw,
        };
        let payload: Map<String, Value> = match serde_json::from_str(payload_raw.get()) {
            Ok(map) => map,
            Err(_) => return Err(malformed("payload", "payload must be a JSON object")),
        };
        if let Some(definition) = catalog.get(name.as_str()) {
            definition.check_payload(&payload)?;
        }
        let routing = routing_of(&payload)?;
        let bytes = envelope_bytes(&name, timestamp, payload_raw.get());
        Ok(Event {
            name,
            timestamp,
            routing,
            bytes,
        })
    }

    /// Builds an event from its parts, for services that emit in-process. The payload is
    /// serialized here, once.
    pub fn from_parts(
        name: EventName,
        timestamp: Timestamp,
        payload: &Map<String, Value>,
    ) -> Result<Event, ValidationError> {
        let routing = routing_of(payload)?;
        let payload_text = serde_json::to_string(payload)
            .map_err(|e| malformed("payload", format!("payload cannot be serialized: {e}")))?;
        let bytes = envelope_bytes(&name, timestamp, &payload_text);
        Ok(Event {
            name,
            timestamp,
            routing,
            bytes,
        })
    }

    /// The event name.
    pub fn name(&self) -> &EventName {
        &self.name
    }

    /// When the emitter says the event happened (`eventTimestamp`).
    pub fn timestamp(&self) -> Timestamp {
        self.timestamp
    }

    /// The company and project the event belongs to.
    pub fn routing(&self) -> &EventRouting {
        &self.routing
    }

    /// The exact envelope bytes: what is sent and signed.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Takes the envelope bytes.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

fn envelope_bytes(name: &EventName, timestamp: Timestamp, payload: &str) -> Vec<u8> {
    // The name is snake_case ASCII, so it needs no JSON escaping.
    let mut out = Vec::with_capacity(payload.len() + name.as_str().len() + 64);
    out.extend_from_slice(b"{\"eventName\":\"");
    out.extend_from_slice(name.as_str().as_bytes());
    out.extend_from_slice(b"\",\"eventTimestamp\":");
    out.extend_from_slice(timestamp.as_millis().to_string().as_bytes());
    out.extend_from_slice(b",\"payload\":");
    out.extend_from_slice(payload.as_bytes());
    out.push(b'}');
    out
}

/// Reads the routing fields of a payload: `tenantId` or `companyId` (which must agree when both
/// are present) and `projectId`.
pub fn routing_of(payload: &Map<String, Value>) -> Result<EventRouting, ValidationError> {
    let tenant = id_field(payload, "tenantId")?;
    let company = id_field(payload, "companyId")?;
    let tenant_id = match (tenant, company) {
        (Some(t), Some(c)) if t != c => {
            return Err(ValidationError::invalid(
                "payload.companyId",
                "payload.tenantId and payload.companyId name different companies",
            ));
        }
        (Some(t), _) => Some(t),
        (None, c) => c,
    };
    let tenant_id = tenant_id
        .map(|t| TenantId::new(t).map_err(|e| rename(e, "payload.tenantId")))
        .transpose()?;
    let project_id = id_field(payload, "projectId")?
        .map(|p| ProjectId::new(p).map_err(|e| rename(e, "payload.projectId")))
        .transpose()?;
    Ok(EventRouting {
        tenant_id,
        project_id,
    })
}

fn id_field<'a>(
    payload: &'a Map<String, Value>,
    key: &'static str,
) -> Result<Option<&'a str>, ValidationError> {
    match payload.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(malformed(
            format!("payload.{key}"),
            format!("payload.{key} must be a string"),
        )),
    }
}

fn rename(err: ValidationError, field: &'static str) -> ValidationError {
    let message = err.message().replacen(err.field(), field, 1);
    ValidationError::new(field, err.kind(), message)
}

fn malformed(field: impl Into<Cow<'static, str>>, message: impl Into<String>) -> ValidationError {
    ValidationError::new(field, ErrorKind::Malformed, message)
}

fn json_error(err: serde_json::Error) -> ValidationError {
    let text = err.to_string();
    if let Some(rest) = text.strip_prefix("unknown field `") {
        let field = rest.split('`').next().unwrap_or_default().to_owned();
        if field.is_empty() {
            // Found by fuzzing: `{"": 1}` must still name a field.
            return ValidationError::new(
                "body",
                ErrorKind::Unknown,
                "the envelope has a field with an empty name (expected eventName, eventTimestamp, payload)",
            );
        }
        let message = format!(
            "{field} is not a field of the event envelope (expected eventName, eventTimestamp, payload)"
        );
        return ValidationError::new(field, ErrorKind::Unknown, message);
    }
    if text.starts_with("duplicate field `") {
        let field = text.split('`').nth(1).unwrap_or_default().to_owned();
        return ValidationError::new(
            field.clone(),
            ErrorKind::Malformed,
            format!("{field} appears twice"),
        );
    }
    let message = match err.classify() {
        serde_json::error::Category::Eof => "the body is not complete JSON".to_owned(),
        serde_json::error::Category::Data => format!("the body must be a JSON object: {err}"),
        _ => format!("the body is not valid JSON: {err}"),
    };
    ValidationError::new("body", ErrorKind::Malformed, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Event, ValidationError> {
        Event::parse(
            text.as_bytes(),
            &EventCatalog::with_extra(["project_deleted"]).unwrap(),
        )
    }

    fn check_err(text: &str, field: &str) {
        match parse(text) {
            Ok(event) => panic!("{text} was accepted as {event:?}"),
            Err(err) => assert_eq!(err.field(), field, "{text}: {}", err.message()),
        }
    }

    #[test]
    fn parses_an_envelope_and_keeps_the_payload_text() {
        let text = r#"{ "payload": {"projectId":"p1", "tenantId":"t1", "n": 1.50}, "eventTimestamp": 1764374400000, "eventName": "project_created" }"#;
        let event = parse(text).unwrap();
        assert_eq!(event.name().as_str(), "project_created");
        assert_eq!(event.timestamp().as_millis(), 1_764_374_400_000);
        assert_eq!(event.routing().tenant_id.as_ref().unwrap().as_str(), "t1");
        assert_eq!(event.routing().project_id.as_ref().unwrap().as_str(), "p1");
        assert_eq!(
            std::str::from_utf8(event.bytes()).unwrap(),
            r#"{"eventName":"project_created","eventTimestamp":1764374400000,"payload":{"projectId":"p1", "tenantId":"t1", "n": 1.50}}"#
        );
        // The bytes are themselves a valid envelope that parses to the same event.
        assert_eq!(
            parse(std::str::from_utf8(event.bytes()).unwrap()).unwrap(),
            event
        );
    }

    #[test]
    fn company_id_routes_like_tenant_id() {
        let event = parse(
            r#"{"eventName":"company_user_added","eventTimestamp":1,"payload":{"companyId":"c1","userId":"u","email":"e","roleId":"r"}}"#,
        )
        .unwrap();
        assert_eq!(event.routing().tenant_id.as_ref().unwrap().as_str(), "c1");
        assert!(event.routing().project_id.is_none());
    }

    #[test]
    fn events_without_schema_need_no_routing() {
        let event =
            parse(r#"{"eventName":"project_deleted","eventTimestamp":1,"payload":{}}"#).unwrap();
        assert_eq!(event.routing(), &EventRouting::default());
    }

    #[test]
    fn bad_envelopes_name_the_field() {
        check_err("", "body");
        check_err("not json", "body");
        check_err("[]", "body");
        check_err(r#"{"eventName":"project_created""#, "body");
        check_err(r#"{"eventTimestamp":1,"payload":{}}"#, "eventName");
        check_err(
            r#"{"eventName":null,"eventTimestamp":1,"payload":{}}"#,
            "eventName",
        );
        check_err(
            r#"{"eventName":7,"eventTimestamp":1,"payload":{}}"#,
            "eventName",
        );
        check_err(
            r#"{"eventName":"Project","eventTimestamp":1,"payload":{}}"#,
            "eventName",
        );
        check_err(
            r#"{"eventName":"nobody_knows","eventTimestamp":1,"payload":{}}"#,
            "eventName",
        );
        check_err(
            r#"{"eventName":"project_deleted","payload":{}}"#,
            "eventTimestamp",
        );
        check_err(
            r#"{"eventName":"project_deleted","eventTimestamp":"1","payload":{}}"#,
            "eventTimestamp",
        );
        check_err(
            r#"{"eventName":"project_deleted","eventTimestamp":-5,"payload":{}}"#,
            "eventTimestamp",
        );
        check_err(
            r#"{"eventName":"project_deleted","eventTimestamp":1.5,"payload":{}}"#,
            "eventTimestamp",
        );
        check_err(
            r#"{"eventName":"project_deleted","eventTimestamp":1}"#,
            "payload",
        );
        check_err(
            r#"{"eventName":"project_deleted","eventTimestamp":1,"payload":[1]}"#,
            "payload",
        );
        check_err(
            r#"{"eventName":"project_deleted","eventTimestamp":1,"payload":null}"#,
            "payload",
        );
        check_err(
            r#"{"eventName":"project_deleted","eventTimestamp":1,"payload":{},"extra":1}"#,
            "extra",
        );
        // Found by the `envelope` fuzz target: an empty field name must still name a field.
        check_err("{\"\"t\u{1}\0\0{\"eve", "body");
        check_err(
            r#"{"":1,"eventName":"project_deleted","eventTimestamp":1,"payload":{}}"#,
            "body",
        );
        check_err(
            r#"{"eventName":"project_deleted","eventTimestamp":1,"payload":{"tenantId":1}}"#,
            "payload.tenantId",
        );
        check_err(
            r#"{"eventName":"project_deleted","eventTimestamp":1,"payload":{"tenantId":""}}"#,
            "payload.tenantId",
        );
        check_err(
            r#"{"eventName":"project_deleted","eventTimestamp":1,"payload":{"tenantId":"a","companyId":"b"}}"#,
            "payload.companyId",
        );
        check_err(
            r#"{"eventName":"project_deleted","eventTimestamp":1,"payload":{"projectId":["p"]}}"#,
            "payload.projectId",
        );
        check_err(
            r#"{"eventName":"project_created","eventTimestamp":1,"payload":{"tenantId":"t"}}"#,
            "payload.projectId",
        );
    }

    #[test]
    fn from_parts_builds_the_same_bytes_as_parse() {
        let mut payload = Map::new();
        payload.insert("tenantId".into(), Value::from("t1"));
        let event = Event::from_parts(
            EventName::new("project_deleted").unwrap(),
            Timestamp::from_millis(9),
            &payload,
        )
        .unwrap();
        assert_eq!(
            event.bytes(),
            br#"{"eventName":"project_deleted","eventTimestamp":9,"payload":{"tenantId":"t1"}}"#
        );
        assert_eq!(
            parse(std::str::from_utf8(event.bytes()).unwrap()).unwrap(),
            event
        );
    }
}
