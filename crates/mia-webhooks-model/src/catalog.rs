//! The event catalogue: the Console's built-in events plus names an operator adds.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use crate::error::quoted;
use crate::{EventName, ValidationError};

/// The built-in catalogue, a copy of the Console's `events.json`.
const BUILT_IN: &str = include_str!("../catalog/events.json");

/// The JSON type of a payload field, as the catalogue declares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FieldType {
    /// A JSON string.
    String,
    /// A JSON object.
    Object,
    /// A JSON number.
    Number,
    /// A JSON boolean.
    Boolean,
    /// A JSON array.
    Array,
    /// Any JSON value.
    Any,
}

impl FieldType {
    fn parse(s: &str) -> FieldType {
        match s {
            "string" => FieldType::String,
            "object" => FieldType::Object,
            "number" | "integer" => FieldType::Number,
            "boolean" => FieldType::Boolean,
            "array" => FieldType::Array,
            _ => FieldType::Any,
        }
    }

    /// The name used in the catalogue and in error messages.
    pub fn as_str(self) -> &'static str {
        match self {
            FieldType::String => "string",
            FieldType::Object => "object",
            FieldType::Number => "number",
            FieldType::Boolean => "boolean",
            FieldType::Array => "array",
            FieldType::Any => "any",
        }
    }

    fn accepts(self, value: &Value) -> bool {
        match self {
            FieldType::String => value.is_string(),
            FieldType::Object => value.is_object(),
            FieldType::Number => value.is_number(),
            FieldType::Boolean => value.is_boolean(),
            FieldType::Array => value.is_array(),
            FieldType::Any => true,
        }
    }
}

/// One field of an event's payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadField {
    /// The field name, such as `tenantId`.
    pub name: String,
    /// Its JSON type.
    pub field_type: FieldType,
    /// Whether every event of this name must carry it.
    pub required: bool,
    /// What it means.
    pub description: String,
}

/// One event of the catalogue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventDefinition {
    /// Its name.
    pub name: EventName,
    /// One line on when it happens.
    pub summary: String,
    /// Its payload fields; empty for names an operator added without a schema.
    pub payload: Vec<PayloadField>,
    /// Whether it comes with the Console (`true`) or was added by an operator.
    pub built_in: bool,
}

impl EventDefinition {
    /// Checks a payload against this definition: every required field present with its type.
    pub fn check_payload(
        &self,
        payload: &serde_json::Map<String, Value>,
    ) -> Result<(), ValidationError> {
        for field in &self.payload {
            let path = format!("payload.{}", field.name);
            match payload.get(&field.name) {
                None | Some(Value::Null) if field.required => {
                    return Err(ValidationError::new(
                        path.clone(),
                        crate::ErrorKind::Missing,
                        format!("{path} is required by {}", self.name),
                    ));
                }
                Some(value) if !value.is_null() && !field.field_type.accepts(value) => {
                    return Err(ValidationError::new(
                        path.clone(),
                        crate::ErrorKind::Malformed,
                        format!("{path} must be a {}", field.field_type.as_str()),
                    ));
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// The events webhooks may subscribe to: the built-in catalogue plus operator additions.
///
/// It is open by design (the Console's integrations add names such as `project_deleted`), so
/// names are data, not an enum.
#[derive(Debug, Clone)]
pub struct EventCatalog {
    events: BTreeMap<EventName, EventDefinition>,
}

#[derive(Deserialize)]
struct RawCatalog {
    events: Vec<RawEvent>,
}

#[derive(Deserialize)]
struct RawEvent {
    name: String,
    #[serde(default)]
    summary: String,
    #[serde(default)]
    payload: Vec<RawField>,
}

#[derive(Deserialize)]
struct RawField {
    name: String,
    #[serde(rename = "type", default)]
    field_type: String,
    #[serde(default)]
    required: bool,
    #[serde(default)]
    description: String,
}

impl EventCatalog {
    /// The built-in catalogue of the Console.
    pub fn built_in() -> Self {
        // The file is part of the crate and checked by a unit test, so a parse failure here is a
        // build defect, not an input error.
        let raw: RawCatalog =
            serde_json::from_str(BUILT_IN).expect("the built-in catalogue is valid JSON");
        let events = raw
            .events
            .into_iter()
            .map(|e| {
                let name = EventName::new(e.name).expect("built-in event names are valid");
                let payload = e
                    .payload
                    .into_iter()
                    .map(|f| PayloadField {
                        name: f.name,
                        field_type: FieldType::parse(&f.field_type),
                        required: f.required,
                        description: f.description,
                    })
                    .collect();
                let def = EventDefinition {
                    name: name.clone(),
                    summary: e.summary,
                    payload,
                    built_in: true,
                };
                (name, def)
            })
            .collect();
        EventCatalog { events }
    }

    /// The built-in catalogue plus `extra` names (an operator's configuration). A name already
    /// built in keeps its definition.
    pub fn with_extra<I, S>(extra: I) -> Result<Self, ValidationError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut catalog = Self::built_in();
        for (i, name) in extra.into_iter().enumerate() {
            let name = EventName::new_for_field(name, format!("extraEvents[{i}]"))?;
            catalog
                .events
                .entry(name.clone())
                .or_insert(EventDefinition {
                    name,
                    summary: String::new(),
                    payload: Vec::new(),
                    built_in: false,
                });
        }
        Ok(catalog)
    }

    /// Whether `name` is in the catalogue.
    pub fn contains(&self, name: &str) -> bool {
        self.events.contains_key(name)
    }

    /// The definition of `name`.
    pub fn get(&self, name: &str) -> Option<&EventDefinition> {
        self.events.get(name)
    }

    /// Every event, sorted by name.
    pub fn events(&self) -> impl Iterator<Item = &EventDefinition> {
        self.events.values()
    }

    /// Every name, sorted, joined by `, ` (for error messages).
    pub fn known_names(&self) -> String {
        let names: Vec<&str> = self.events.keys().map(EventName::as_str).collect();
        names.join(", ")
    }

    /// Validates `name` for the field `field` and checks that it is catalogued.
    pub fn resolve(
        &self,
        name: &str,
        field: impl Into<std::borrow::Cow<'static, str>>,
    ) -> Result<EventName, ValidationError> {
        let field = field.into();
        let event = EventName::new_for_field(name, field.clone())?;
        if !self.contains(event.as_str()) {
            let message = format!(
                "{field}: {} is not a known event; known events: {}",
                quoted(name),
                self.known_names()
            );
            return Err(ValidationError::new(
                field,
                crate::ErrorKind::Unknown,
                message,
            ));
        }
        Ok(event)
    }
}

impl Default for EventCatalog {
    fn default() -> Self {
        Self::built_in()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_catalogue_has_the_console_events() {
        let catalog = EventCatalog::built_in();
        for name in [
            "project_created",
            "service_created",
            "tag_created",
            "company_user_added",
            "company_user_edited",
            "company_user_removed",
            "project_user_added",
            "project_user_removed",
        ] {
            let def = catalog
                .get(name)
                .unwrap_or_else(|| panic!("{name} missing"));
            assert!(def.built_in && !def.summary.is_empty(), "{name}");
        }
        let tag = catalog.get("tag_created").unwrap();
        let project = tag.payload.iter().find(|f| f.name == "project").unwrap();
        assert_eq!(
            (project.field_type, project.required),
            (FieldType::Object, false)
        );
    }

    #[test]
    fn operators_extend_the_catalogue() {
        let catalog =
            EventCatalog::with_extra(["project_deleted", "configuration_created"]).unwrap();
        assert!(catalog.contains("project_deleted") && catalog.contains("project_created"));
        assert!(!catalog.get("project_deleted").unwrap().built_in);
        let err = EventCatalog::with_extra(["ok_name", "Bad"]).unwrap_err();
        assert_eq!(err.field(), "extraEvents[1]");
    }

    #[test]
    fn unknown_event_lists_the_known_names() {
        let err = EventCatalog::built_in()
            .resolve("project_deleted", "events[0]")
            .unwrap_err();
        assert_eq!(err.field(), "events[0]");
        assert_eq!(err.kind(), crate::ErrorKind::Unknown);
        assert!(
            err.message()
                .contains("project_created, project_user_added"),
            "{}",
            err.message()
        );
    }

    #[test]
    fn payload_check_reports_missing_and_mistyped_fields() {
        let catalog = EventCatalog::built_in();
        let def = catalog.get("project_created").unwrap();
        let payload = |v: Value| v.as_object().unwrap().clone();
        assert!(
            def.check_payload(&payload(
                serde_json::json!({"tenantId": "t", "projectId": "p"})
            ))
            .is_ok()
        );
        let err = def
            .check_payload(&payload(serde_json::json!({"tenantId": "t"})))
            .unwrap_err();
        assert_eq!(err.field(), "payload.projectId");
        let err = def
            .check_payload(&payload(
                serde_json::json!({"tenantId": 7, "projectId": "p"}),
            ))
            .unwrap_err();
        assert_eq!(
            (err.field(), err.kind()),
            ("payload.tenantId", crate::ErrorKind::Malformed)
        );
    }
}
