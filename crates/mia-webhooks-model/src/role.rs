//! Who may do what: the roles an API token carries.

use std::fmt;

use crate::error::quoted;
use crate::{ProjectId, Scope, TenantId, ValidationError};

/// The role of an API token.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Role {
    /// Everything, on every scope.
    InstanceAdmin,
    /// The webhooks of one company and of its projects.
    CompanyAdmin {
        /// The company.
        tenant_id: TenantId,
    },
    /// The webhooks of one project.
    ProjectAdmin {
        /// The project's company.
        tenant_id: TenantId,
        /// The project.
        project_id: ProjectId,
    },
    /// May only post events.
    Emitter,
}

impl Role {
    /// Builds a role from its name (`instance-admin`, `company-admin`, `project-admin`,
    /// `emitter`) and the tenant and project it needs.
    pub fn new(
        name: &str,
        tenant_id: Option<&str>,
        project_id: Option<&str>,
    ) -> Result<Role, ValidationError> {
        let tenant = || {
            tenant_id.map(TenantId::new).unwrap_or_else(|| {
                Err(ValidationError::invalid(
                    "tenantId",
                    format!("tenantId is required for a {name} token"),
                ))
            })
        };
        let project = || {
            project_id.map(ProjectId::new).unwrap_or_else(|| {
                Err(ValidationError::invalid(
                    "projectId",
                    format!("projectId is required for a {name} token"),
                ))
            })
        };
        let unexpected = |field: &'static str| {
            ValidationError::invalid(field, format!("{field} is not taken by a {name} token"))
        };
        match name {
            "instance-admin" | "emitter" => {
                if tenant_id.is_some() {
                    return Err(unexpected("tenantId"));
                }
                if project_id.is_some() {
                    return Err(unexpected("projectId"));
                }
                Ok(if name == "emitter" {
                    Role::Emitter
                } else {
                    Role::InstanceAdmin
                })
            }
            "company-admin" => {
                if project_id.is_some() {
                    return Err(unexpected("projectId"));
                }
                Ok(Role::CompanyAdmin {
                    tenant_id: tenant()?,
                })
            }
            "project-admin" => Ok(Role::ProjectAdmin {
                tenant_id: tenant()?,
                project_id: project()?,
            }),
            other => Err(ValidationError::invalid(
                "role",
                format!(
                    "role {} is not one of instance-admin, company-admin, project-admin, emitter",
                    quoted(other)
                ),
            )),
        }
    }

    /// The role's name.
    pub fn name(&self) -> &'static str {
        match self {
            Role::InstanceAdmin => "instance-admin",
            Role::CompanyAdmin { .. } => "company-admin",
            Role::ProjectAdmin { .. } => "project-admin",
            Role::Emitter => "emitter",
        }
    }

    /// The scope the role administers, if it administers one.
    pub fn scope(&self) -> Option<Scope> {
        match self {
            Role::InstanceAdmin => Some(Scope::Instance),
            Role::CompanyAdmin { tenant_id } => Some(Scope::Company {
                tenant_id: tenant_id.clone(),
            }),
            Role::ProjectAdmin {
                tenant_id,
                project_id,
            } => Some(Scope::Project {
                tenant_id: tenant_id.clone(),
                project_id: project_id.clone(),
            }),
            Role::Emitter => None,
        }
    }

    /// Whether the role may see and change webhooks installed on `scope`.
    pub fn can_manage(&self, scope: &Scope) -> bool {
        self.scope().is_some_and(|own| own.contains(scope))
    }

    /// Whether the role may post events.
    pub fn can_emit(&self) -> bool {
        matches!(self, Role::InstanceAdmin | Role::Emitter)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.scope() {
            Some(Scope::Instance) | None => f.write_str(self.name()),
            Some(scope) => write!(f, "{} of {scope}", self.name()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role(name: &str, t: Option<&str>, p: Option<&str>) -> Role {
        Role::new(name, t, p).unwrap()
    }

    #[test]
    fn roles_reach_their_scopes_only() {
        let company: Scope = "company/t1".parse().unwrap();
        let project: Scope = "company/t1/project/p1".parse().unwrap();
        let other: Scope = "company/t2/project/p1".parse().unwrap();
        let admin = role("instance-admin", None, None);
        let company_admin = role("company-admin", Some("t1"), None);
        let project_admin = role("project-admin", Some("t1"), Some("p1"));
        let emitter = role("emitter", None, None);
        assert!(admin.can_manage(&Scope::Instance) && admin.can_manage(&other));
        assert!(company_admin.can_manage(&company) && company_admin.can_manage(&project));
        assert!(!company_admin.can_manage(&Scope::Instance) && !company_admin.can_manage(&other));
        assert!(project_admin.can_manage(&project) && !project_admin.can_manage(&company));
        assert!(!emitter.can_manage(&Scope::Instance) && !emitter.can_manage(&project));
        assert!(admin.can_emit() && emitter.can_emit() && !company_admin.can_emit());
    }

    #[test]
    fn bad_roles_name_the_field() {
        let field = |n, t, p| Role::new(n, t, p).unwrap_err().field().to_owned();
        assert_eq!(field("root", None, None), "role");
        assert_eq!(field("company-admin", None, None), "tenantId");
        assert_eq!(field("project-admin", Some("t"), None), "projectId");
        assert_eq!(field("emitter", Some("t"), None), "tenantId");
        assert_eq!(field("company-admin", Some("t"), Some("p")), "projectId");
    }
}
