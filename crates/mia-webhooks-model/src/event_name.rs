//! Event names: `snake_case` `subject_action`, such as `project_created`.

use std::borrow::Borrow;
use std::fmt;
use std::str::FromStr;

use crate::ValidationError;
use crate::error::quoted;

/// The longest event name accepted, in bytes.
pub const MAX_EVENT_NAME_LEN: usize = 128;

/// A validated event name: lowercase ASCII words joined by `_`, at least two words
/// (`subject_action`), each starting with a letter, at most 128 bytes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventName(String);

impl EventName {
    /// Validates `name`; errors name the field `eventName`.
    pub fn new(name: impl Into<String>) -> Result<Self, ValidationError> {
        Self::new_for_field(name, "eventName")
    }

    /// Validates `name`, reporting errors against `field` (for example `events[2]`).
    pub fn new_for_field(
        name: impl Into<String>,
        field: impl Into<std::borrow::Cow<'static, str>>,
    ) -> Result<Self, ValidationError> {
        let name = name.into();
        let field = field.into();
        if let Err(problem) = check(&name) {
            let message = format!(
                "{field} {} is not a valid event name: {problem}",
                quoted(&name)
            );
            return Err(ValidationError::invalid(field, message));
        }
        Ok(EventName(name))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn check(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("it is empty");
    }
    if name.len() > MAX_EVENT_NAME_LEN {
        return Err("it is longer than 128 bytes");
    }
    let mut words = 0;
    for word in name.split('_') {
        let mut chars = word.chars();
        match chars.next() {
            None => return Err("words must be joined by single underscores"),
            Some(c) if c.is_ascii_lowercase() => {}
            Some(_) => return Err("each word must start with a lowercase letter"),
        }
        if !chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()) {
            return Err("use only lowercase letters, digits and underscores (snake_case)");
        }
        words += 1;
    }
    if words < 2 {
        return Err("it must have the form subject_action, such as project_created");
    }
    Ok(())
}

impl fmt::Display for EventName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for EventName {
    type Err = ValidationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl AsRef<str> for EventName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for EventName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn check_name(input: &str, ok: bool) {
        assert_eq!(EventName::new(input).is_ok(), ok, "{input:?}");
    }

    #[test]
    fn valid_and_invalid_names() {
        check_name("project_created", true);
        check_name("company_user_added", true);
        check_name("v2_event_done", true);
        check_name("tag_created2", true);
        check_name("", false);
        check_name("created", false);
        check_name("Project_created", false);
        check_name("project-created", false);
        check_name("project__created", false);
        check_name("_project_created", false);
        check_name("project_created_", false);
        check_name("project_2created", false);
        check_name("projéct_created", false);
        check_name(&format!("a_{}", "b".repeat(127)), false);
    }

    #[test]
    fn error_names_the_field() {
        let err = EventName::new_for_field("Bad", "events[1]").unwrap_err();
        assert_eq!(err.field(), "events[1]");
        assert!(err.message().contains("\"Bad\""), "{}", err.message());
    }

    proptest! {
        #[test]
        fn never_panics_and_accepted_names_print_back(s in "\\PC{0,40}") {
            if let Ok(name) = EventName::new(s.clone()) {
                prop_assert_eq!(name.to_string(), s);
            }
        }

        #[test]
        fn snake_case_words_are_accepted(words in proptest::collection::vec("[a-z][a-z0-9]{0,8}", 2..5)) {
            let name = words.join("_");
            prop_assert!(EventName::new(name).is_ok());
        }
    }
}
