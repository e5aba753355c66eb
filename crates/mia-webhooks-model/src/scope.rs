//! Where a webhook is installed, and which events reach it.

use std::fmt;
use std::str::FromStr;

use crate::ValidationError;

/// The longest tenant or project id accepted, in bytes.
pub const MAX_ID_LEN: usize = 256;

macro_rules! console_id {
    ($(#[$doc:meta])* $name:ident, $field:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            /// Validates an id: 1 to 256 bytes, no whitespace, no control character and no `/`
            /// (ids travel in URL paths).
            pub fn new(id: impl Into<String>) -> Result<Self, ValidationError> {
                let id = id.into();
                validate_console_id($field, &id)?;
                Ok($name(id))
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl FromStr for $name {
            type Err = ValidationError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::new(s)
            }
        }
    };
}

console_id!(
    /// A company (tenant) id of the Console.
    TenantId,
    "tenantId"
);
console_id!(
    /// A project id of the Console, unique within its company.
    ProjectId,
    "projectId"
);

fn validate_console_id(field: &'static str, id: &str) -> Result<(), ValidationError> {
    if id.is_empty() {
        return Err(ValidationError::invalid(
            field,
            format!("{field} must not be empty"),
        ));
    }
    if id.len() > MAX_ID_LEN {
        return Err(ValidationError::invalid(
            field,
            format!(
                "{field} is {} bytes long; the limit is {MAX_ID_LEN}",
                id.len()
            ),
        ));
    }
    if let Some(c) = id
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || *c == '/')
    {
        return Err(ValidationError::invalid(
            field,
            format!("{field} must not contain whitespace, control characters or '/' (found {c:?})"),
        ));
    }
    Ok(())
}

/// Where a webhook is installed.
///
/// Printed and parsed as `instance`, `company/{tenantId}` or
/// `company/{tenantId}/project/{projectId}`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// The whole Console instance: every event of the subscribed names.
    Instance,
    /// One company: events whose company is this tenant.
    Company {
        /// The company.
        tenant_id: TenantId,
    },
    /// One project: events of this company and this project.
    Project {
        /// The company of the project.
        tenant_id: TenantId,
        /// The project.
        project_id: ProjectId,
    },
}

impl Scope {
    /// The company this scope belongs to, if any.
    pub fn tenant_id(&self) -> Option<&TenantId> {
        match self {
            Scope::Instance => None,
            Scope::Company { tenant_id } | Scope::Project { tenant_id, .. } => Some(tenant_id),
        }
    }

    /// The project of this scope, if it is a project scope.
    pub fn project_id(&self) -> Option<&ProjectId> {
        match self {
            Scope::Project { project_id, .. } => Some(project_id),
            _ => None,
        }
    }

    /// A short name of the kind of scope: `instance`, `company` or `project`.
    pub fn kind(&self) -> &'static str {
        match self {
            Scope::Instance => "instance",
            Scope::Company { .. } => "company",
            Scope::Project { .. } => "project",
        }
    }

    /// Whether `self` contains `other`: the instance contains everything, a company contains
    /// itself and its projects, a project only itself.
    pub fn contains(&self, other: &Scope) -> bool {
        match (self, other) {
            (Scope::Instance, _) => true,
            (Scope::Company { tenant_id }, other) => other.tenant_id() == Some(tenant_id),
            (Scope::Project { .. }, other) => self == other,
        }
    }

    /// Whether a webhook installed on this scope receives an event routed to `routing`
    /// (SPEC §3).
    pub fn receives(&self, routing: &EventRouting) -> bool {
        match self {
            Scope::Instance => true,
            Scope::Company { tenant_id } => routing.tenant_id.as_ref() == Some(tenant_id),
            Scope::Project {
                tenant_id,
                project_id,
            } => {
                routing.tenant_id.as_ref() == Some(tenant_id)
                    && routing.project_id.as_ref() == Some(project_id)
            }
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Instance => f.write_str("instance"),
            Scope::Company { tenant_id } => write!(f, "company/{tenant_id}"),
            Scope::Project {
                tenant_id,
                project_id,
            } => {
                write!(f, "company/{tenant_id}/project/{project_id}")
            }
        }
    }
}

impl FromStr for Scope {
    type Err = ValidationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.split('/').collect();
        match parts.as_slice() {
            ["instance"] => Ok(Scope::Instance),
            ["company", tenant] => Ok(Scope::Company {
                tenant_id: TenantId::new(*tenant)?,
            }),
            ["company", tenant, "project", project] => Ok(Scope::Project {
                tenant_id: TenantId::new(*tenant)?,
                project_id: ProjectId::new(*project)?,
            }),
            _ => Err(ValidationError::invalid(
                "scope",
                "scope must be `instance`, `company/{tenantId}` or \
                 `company/{tenantId}/project/{projectId}`",
            )),
        }
    }
}

/// Which company and project an event belongs to, read from its payload.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct EventRouting {
    /// The company, from `payload.tenantId` or `payload.companyId`.
    pub tenant_id: Option<TenantId>,
    /// The project, from `payload.projectId`.
    pub project_id: Option<ProjectId>,
}

impl EventRouting {
    /// The scopes whose webhooks may receive the event: the instance always, the company when
    /// the event has one, the project when it has both a company and a project.
    ///
    /// Storage looks webhooks up by (event name, scope) for each of these: an indexed lookup,
    /// never a scan.
    pub fn candidate_scopes(&self) -> Vec<Scope> {
        let mut scopes = vec![Scope::Instance];
        if let Some(tenant_id) = &self.tenant_id {
            scopes.push(Scope::Company {
                tenant_id: tenant_id.clone(),
            });
            if let Some(project_id) = &self.project_id {
                scopes.push(Scope::Project {
                    tenant_id: tenant_id.clone(),
                    project_id: project_id.clone(),
                });
            }
        }
        scopes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tenant(s: &str) -> TenantId {
        TenantId::new(s).unwrap()
    }

    fn project(s: &str) -> ProjectId {
        ProjectId::new(s).unwrap()
    }

    fn routing(tenant_id: Option<&str>, project_id: Option<&str>) -> EventRouting {
        EventRouting {
            tenant_id: tenant_id.map(tenant),
            project_id: project_id.map(project),
        }
    }

    fn check(scope: &str, event: (Option<&str>, Option<&str>), expected: bool) {
        let scope: Scope = scope.parse().unwrap();
        let routing = routing(event.0, event.1);
        assert_eq!(
            scope.receives(&routing),
            expected,
            "{scope} receiving {routing:?}"
        );
        let candidate = routing.candidate_scopes().contains(&scope);
        assert_eq!(
            candidate, expected,
            "candidate scopes of {routing:?} vs {scope}"
        );
    }

    #[test]
    fn routing_matrix() {
        check("instance", (None, None), true);
        check("instance", (Some("t1"), None), true);
        check("instance", (Some("t1"), Some("p1")), true);
        check("company/t1", (None, None), false);
        check("company/t1", (Some("t1"), None), true);
        check("company/t1", (Some("t1"), Some("p1")), true);
        check("company/t1", (Some("t2"), Some("p1")), false);
        check("company/t1", (None, Some("p1")), false);
        check("company/t1/project/p1", (None, None), false);
        check("company/t1/project/p1", (Some("t1"), None), false);
        check("company/t1/project/p1", (Some("t1"), Some("p1")), true);
        check("company/t1/project/p1", (Some("t1"), Some("p2")), false);
        check("company/t1/project/p1", (Some("t2"), Some("p1")), false);
        check("company/t1/project/p1", (None, Some("p1")), false);
    }

    #[test]
    fn containment() {
        let instance = Scope::Instance;
        let company: Scope = "company/t1".parse().unwrap();
        let other_company: Scope = "company/t2".parse().unwrap();
        let proj: Scope = "company/t1/project/p1".parse().unwrap();
        assert!(instance.contains(&company) && instance.contains(&proj));
        assert!(company.contains(&proj) && company.contains(&company));
        assert!(!company.contains(&instance) && !company.contains(&other_company));
        assert!(proj.contains(&proj) && !proj.contains(&company));
    }

    #[test]
    fn bad_scopes_and_ids_name_the_field() {
        for (input, field) in [
            ("", "scope"),
            ("company", "scope"),
            ("company/", "tenantId"),
            ("company/t1/project/", "projectId"),
            ("company/t1/projects/p1", "scope"),
            ("tenant/t1", "scope"),
        ] {
            let err = input.parse::<Scope>().unwrap_err();
            assert_eq!(err.field(), field, "{input:?}");
        }
        assert_eq!(TenantId::new("a b").unwrap_err().field(), "tenantId");
        assert_eq!(
            TenantId::new("x".repeat(257)).unwrap_err().field(),
            "tenantId"
        );
        assert_eq!(ProjectId::new("a\u{0}").unwrap_err().field(), "projectId");
    }

    fn id_strategy() -> impl Strategy<Value = String> {
        "[A-Za-z0-9._:-]{1,40}"
    }

    proptest! {
        #[test]
        fn scope_print_parse_round_trips(t in id_strategy(), p in id_strategy(), kind in 0u8..3) {
            let scope = match kind {
                0 => Scope::Instance,
                1 => Scope::Company { tenant_id: tenant(&t) },
                _ => Scope::Project { tenant_id: tenant(&t), project_id: project(&p) },
            };
            prop_assert_eq!(scope.to_string().parse::<Scope>().unwrap(), scope);
        }

        #[test]
        fn receives_agrees_with_candidate_scopes(
            scope_tenant in "[ab]", scope_project in "[xy]", kind in 0u8..3,
            ev_tenant in proptest::option::of("[ab]"), ev_project in proptest::option::of("[xy]"),
        ) {
            let scope = match kind {
                0 => Scope::Instance,
                1 => Scope::Company { tenant_id: tenant(&scope_tenant) },
                _ => Scope::Project { tenant_id: tenant(&scope_tenant), project_id: project(&scope_project) },
            };
            let routing = routing(ev_tenant.as_deref(), ev_project.as_deref());
            prop_assert_eq!(scope.receives(&routing), routing.candidate_scopes().contains(&scope));
        }
    }
}
