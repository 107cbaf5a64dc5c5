//! Launch templates: named, numbered versions of launch parameters, one of them the
//! default. A version's data is opaque here (the edge decodes and validates it); this
//! module keeps names unique, numbers versions, resolves `$Latest` and `$Default`,
//! and guards the default version.

use kiln_store::launch_templates::{self as store, LaunchTemplate, TemplateVersion};
use kiln_store::{Connection, Scope};
use kiln_types::{ResourceKind, TemplateRef, VersionRef};

use crate::{tags, Cloud, Error, Result};

/// The most versions one template may have, as on EC2.
pub const MAX_VERSIONS: i64 = 10_000;

/// What became of one version a DeleteLaunchTemplateVersions named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionDeletion {
    Deleted,
    NotFound,
    /// The default version stays until another is made the default.
    IsDefault,
}

fn find(conn: &Connection, scope: &Scope, template: &TemplateRef) -> Result<LaunchTemplate> {
    match template {
        TemplateRef::Id(id) => {
            store::get(conn, scope, id)?.ok_or_else(|| Error::not_found(ResourceKind::LaunchTemplate, id.as_str()))
        }
        TemplateRef::Name(name) => {
            store::by_name(conn, scope, name)?.ok_or_else(|| Error::TemplateNameNotFound(name.clone()))
        }
    }
}

fn version_not_found(t: &LaunchTemplate, v: impl std::fmt::Display) -> Error {
    Error::TemplateVersionNotFound(format!(
        "The specified launch template version does not exist: version {v} of {} ({}). DescribeLaunchTemplateVersions lists its versions.",
        t.id, t.name
    ))
}

fn number_of(t: &LaunchTemplate, version: VersionRef) -> i64 {
    match version {
        VersionRef::Latest => t.latest_version,
        VersionRef::Default => t.default_version,
        VersionRef::Number(n) => n,
    }
}

fn one_version(conn: &Connection, scope: &Scope, t: &LaunchTemplate, version: VersionRef) -> Result<TemplateVersion> {
    let n = number_of(t, version);
    store::versions(conn, scope, Some(&t.id))?
        .into_iter()
        .find(|v| v.version == n)
        .ok_or_else(|| version_not_found(t, version))
}

impl Cloud {
    /// Creates a template with its first version (the default). A ClientToken seen
    /// before answers the template it made, if the name is the same.
    pub fn create_launch_template(
        &self,
        scope: &Scope,
        name: &str,
        description: Option<&str>,
        data: &[(String, String)],
        tag_list: &[(String, String)],
        client_token: Option<&str>,
    ) -> Result<LaunchTemplate> {
        self.store.write(|tx| {
            if let Some(token) = client_token {
                if let Some(t) = store::by_token(tx, scope, token)? {
                    if t.name != name {
                        return Err(Error::IdempotentMismatch(format!(
                            "The client token {token} was used for launch template {} with another name",
                            t.id
                        )));
                    }
                    return Ok(t);
                }
            }
            let id = ResourceKind::LaunchTemplate.generate();
            let now = kiln_store::now();
            if !store::insert(tx, scope, &id, name, client_token, &now)? {
                return Err(Error::Duplicate { kind: ResourceKind::LaunchTemplate, name: name.to_owned() });
            }
            store::add_version(tx, &id, description, data, None, &now)?;
            tags::put_all(tx, scope, ResourceKind::LaunchTemplate, &id, tag_list)?;
            store::get(tx, scope, &id)?.ok_or_else(|| Error::not_found(ResourceKind::LaunchTemplate, id))
        })
    }

    /// Adds a version (the next number) to a template. `data` is complete: the edge
    /// has laid it over its source version already.
    pub fn create_launch_template_version(
        &self,
        scope: &Scope,
        template: &TemplateRef,
        description: Option<&str>,
        data: &[(String, String)],
        client_token: Option<&str>,
    ) -> Result<TemplateVersion> {
        self.store.write(|tx| {
            let t = find(tx, scope, template)?;
            if let Some(n) = client_token.map(|token| store::version_by_token(tx, &t.id, token)).transpose()?.flatten() {
                return one_version(tx, scope, &t, VersionRef::Number(n));
            }
            if store::versions(tx, scope, Some(&t.id))?.len() as i64 >= MAX_VERSIONS {
                return Err(Error::InvalidParameterValue(format!(
                    "Launch template {} has {MAX_VERSIONS} versions, the most it may have; delete some with DeleteLaunchTemplateVersions",
                    t.id
                )));
            }
            let n = store::add_version(tx, &t.id, description, data, client_token, &kiln_store::now())?;
            one_version(tx, scope, &t, VersionRef::Number(n))
        })
    }

    /// One template, by id or name.
    pub fn launch_template(&self, scope: &Scope, template: &TemplateRef) -> Result<LaunchTemplate> {
        self.store.read(|c| find(c, scope, template))
    }

    /// The scope's templates, narrowed to `ids` and `names` (each must exist).
    pub fn launch_templates(
        &self,
        scope: &Scope,
        ids: &[kiln_types::LaunchTemplateId],
        names: &[String],
    ) -> Result<Vec<LaunchTemplate>> {
        let all = self.store.read(|c| Ok::<_, Error>(store::list(c, scope)?))?;
        crate::missing(ids, ResourceKind::LaunchTemplate, |i| all.iter().any(|t| t.id == i))?;
        if let Some(name) = names.iter().find(|n| !all.iter().any(|t| &t.name == *n)) {
            return Err(Error::TemplateNameNotFound(name.clone()));
        }
        Ok(all
            .into_iter()
            .filter(|t| {
                (ids.is_empty() && names.is_empty()) || ids.iter().any(|i| t.id == *i) || names.contains(&t.name)
            })
            .collect())
    }

    /// One version of a template, as RunInstances and SourceVersion name it.
    pub fn launch_template_version(
        &self,
        scope: &Scope,
        template: &TemplateRef,
        version: VersionRef,
    ) -> Result<TemplateVersion> {
        self.store.read(|c| {
            let t = find(c, scope, template)?;
            one_version(c, scope, &t, version)
        })
    }

    /// Versions, of one template or (naming only `$Latest` and `$Default`) of every
    /// template in the scope. Named versions must exist; `min` and `max` bound the
    /// numbers of an unnamed list.
    pub fn launch_template_versions(
        &self,
        scope: &Scope,
        template: Option<&TemplateRef>,
        versions: &[VersionRef],
        min: Option<i64>,
        max: Option<i64>,
    ) -> Result<Vec<TemplateVersion>> {
        self.store.read(|c| {
            let Some(template) = template else {
                if versions.iter().any(|v| matches!(v, VersionRef::Number(_))) {
                    return Err(Error::InvalidParameterValue(
                        "Numbered versions need a launch template: give LaunchTemplateId or LaunchTemplateName, or ask for $Latest or $Default".into(),
                    ));
                }
                let templates = store::list(c, scope)?;
                let all = store::versions(c, scope, None)?;
                return Ok(all
                    .into_iter()
                    .filter(|v| {
                        let Some(t) = templates.iter().find(|t| t.id == v.template_id) else { return false };
                        versions.is_empty() || versions.iter().any(|r| number_of(t, *r) == v.version)
                    })
                    .collect());
            };
            let t = find(c, scope, template)?;
            let all = store::versions(c, scope, Some(&t.id))?;
            if let Some(v) = versions.iter().find(|r| !all.iter().any(|v| v.version == number_of(&t, **r))) {
                return Err(version_not_found(&t, v));
            }
            Ok(all
                .into_iter()
                .filter(|v| {
                    (versions.is_empty() || versions.iter().any(|r| number_of(&t, *r) == v.version))
                        && min.is_none_or(|m| v.version >= m)
                        && max.is_none_or(|m| v.version <= m)
                })
                .collect())
        })
    }

    /// Makes `version` the template's default.
    pub fn set_default_launch_template_version(
        &self,
        scope: &Scope,
        template: &TemplateRef,
        version: VersionRef,
    ) -> Result<LaunchTemplate> {
        self.store.write(|tx| {
            let t = find(tx, scope, template)?;
            let v = one_version(tx, scope, &t, version)?;
            store::set_default(tx, &t.id, v.version)?;
            store::get(tx, scope, &t.id)?.ok_or_else(|| Error::not_found(ResourceKind::LaunchTemplate, t.id))
        })
    }

    /// Deletes a template with every version and its tags; answers what it was.
    pub fn delete_launch_template(&self, scope: &Scope, template: &TemplateRef) -> Result<LaunchTemplate> {
        self.store.write(|tx| {
            let t = find(tx, scope, template)?;
            store::delete(tx, &t.id)?;
            Ok(t)
        })
    }

    /// Deletes versions one by one; the default version is refused. Answers the
    /// template and what became of each version.
    pub fn delete_launch_template_versions(
        &self,
        scope: &Scope,
        template: &TemplateRef,
        versions: &[i64],
    ) -> Result<(LaunchTemplate, Vec<(i64, VersionDeletion)>)> {
        self.store.write(|tx| {
            let t = find(tx, scope, template)?;
            let mut out = Vec::new();
            for &n in versions {
                let outcome = if n == t.default_version {
                    VersionDeletion::IsDefault
                } else if store::delete_version(tx, &t.id, n)? {
                    VersionDeletion::Deleted
                } else {
                    VersionDeletion::NotFound
                };
                out.push((n, outcome));
            }
            Ok((t, out))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::World;

    fn data(image: &str) -> Vec<(String, String)> {
        vec![("ImageId".into(), image.into())]
    }

    #[test]
    fn versions_number_on_resolve_and_the_default_is_guarded() {
        let w = World::new("templates-versions");
        let (cloud, scope) = (&w.cloud, &w.scope);
        let t = cloud.create_launch_template(scope, "web", Some("first"), &data("ami-1"), &[], None).expect("create");
        assert_eq!((t.default_version, t.latest_version), (1, 1));
        let by_name = TemplateRef::Name("web".into());
        let v2 = cloud.create_launch_template_version(scope, &by_name, None, &data("ami-2"), None).expect("v2");
        assert_eq!(v2.version, 2);
        assert!(!v2.is_default);
        let latest = cloud.launch_template_version(scope, &by_name, VersionRef::Latest).expect("latest");
        assert_eq!(latest.data, data("ami-2"));
        let default = cloud.launch_template_version(scope, &by_name, VersionRef::Default).expect("default");
        assert_eq!(default.data, data("ami-1"));
        assert!(matches!(
            cloud.launch_template_version(scope, &by_name, VersionRef::Number(7)),
            Err(Error::TemplateVersionNotFound(_))
        ));

        let (_, outcome) = cloud.delete_launch_template_versions(scope, &by_name, &[1, 2, 9]).expect("delete");
        assert_eq!(
            outcome,
            vec![(1, VersionDeletion::IsDefault), (2, VersionDeletion::Deleted), (9, VersionDeletion::NotFound)]
        );
        // A deleted number is never given again.
        let v3 = cloud.create_launch_template_version(scope, &by_name, None, &data("ami-3"), None).expect("v3");
        assert_eq!(v3.version, 3);
        let t = cloud.set_default_launch_template_version(scope, &by_name, VersionRef::Number(3)).expect("default");
        assert_eq!((t.default_version, t.latest_version), (3, 3));
    }

    #[test]
    fn names_are_unique_and_tokens_answer_once() {
        let w = World::new("templates-names");
        let (cloud, scope) = (&w.cloud, &w.scope);
        let t = cloud.create_launch_template(scope, "web", None, &data("ami-1"), &[], Some("tok")).expect("create");
        let again = cloud.create_launch_template(scope, "web", None, &data("ami-1"), &[], Some("tok")).expect("again");
        assert_eq!(t.id, again.id);
        assert!(matches!(
            cloud.create_launch_template(scope, "web", None, &data("ami-1"), &[], None),
            Err(Error::Duplicate { .. })
        ));
        assert!(matches!(
            cloud.create_launch_template(scope, "other", None, &data("ami-1"), &[], Some("tok")),
            Err(Error::IdempotentMismatch(_))
        ));
        assert!(matches!(cloud.launch_templates(scope, &[], &["nope".into()]), Err(Error::TemplateNameNotFound(_))));
        cloud.delete_launch_template(scope, &TemplateRef::Name("web".into())).expect("delete");
        assert!(cloud.launch_templates(scope, &[], &[]).expect("list").is_empty());
    }
}
