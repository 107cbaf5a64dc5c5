//! EC2 filters: `Filter.N.Name` with values that are OR'ed, filters AND'ed, `*` and `?`
//! wildcards, and the `tag:KEY`, `tag-key`, `tag-value` forms every resource shares.

use crate::Ec2Error;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    pub name: String,
    pub values: Vec<String>,
}

/// What a resource answers when asked for a filter's field.
pub enum Field {
    /// The resource's values for this filter (a filter matches if any matches).
    Values(Vec<String>),
    /// Not a filter this resource knows.
    Unknown,
}

impl Field {
    pub fn one(v: impl Into<String>) -> Self {
        Field::Values(vec![v.into()])
    }
    pub fn opt(v: Option<impl Into<String>>) -> Self {
        Field::Values(v.map(Into::into).into_iter().collect())
    }
    pub fn many<I: IntoIterator<Item = S>, S: Into<String>>(v: I) -> Self {
        Field::Values(v.into_iter().map(Into::into).collect())
    }
}

impl Filter {
    /// A filter by the documented name of `name`: EC2 still accepts the older
    /// camelCase names (`isDefault`, `vpcId`, `availabilityZone`,
    /// `attachment.instanceId`) beside the documented ones, which are all lower case
    /// with dashes. A tag's key (`tag:Key`) is kept as given.
    pub fn new(name: &str, values: Vec<String>) -> Self {
        Self { name: documented_name(name), values }
    }

    /// Whether any of the resource's `candidates` matches any of the filter's values.
    pub fn matches_any(&self, candidates: &[String]) -> bool {
        candidates.iter().any(|c| self.values.iter().any(|pat| wildcard(pat, c)))
    }
}

/// Keeps the items that match every filter. `known` lists the filter names the
/// resource supports (besides the tag forms); any other name is an error, even when
/// there are no items. `field` answers a filter name for an item; the tag filters are
/// answered from `tags`.
pub fn apply<T>(
    items: Vec<T>,
    filters: &[Filter],
    known: &[&str],
    field: impl Fn(&T, &str) -> Field,
    tags: impl Fn(&T) -> Vec<(String, String)>,
) -> Result<Vec<T>, Ec2Error> {
    for f in filters {
        let is_tag = f.name.starts_with("tag:") || f.name == "tag-key" || f.name == "tag-value";
        if !is_tag && !known.contains(&f.name.as_str()) {
            return Err(unknown_filter(&f.name));
        }
    }
    if filters.is_empty() {
        return Ok(items);
    }
    Ok(items
        .into_iter()
        .filter(|item| {
            filters.iter().all(|f| {
                let values = if let Some(key) = f.name.strip_prefix("tag:") {
                    tags(item).into_iter().filter(|(k, _)| k == key).map(|(_, v)| v).collect()
                } else if f.name == "tag-key" {
                    tags(item).into_iter().map(|(k, _)| k).collect()
                } else if f.name == "tag-value" {
                    tags(item).into_iter().map(|(_, v)| v).collect()
                } else {
                    match field(item, &f.name) {
                        Field::Values(v) => v,
                        Field::Unknown => Vec::new(),
                    }
                };
                f.matches_any(&values)
            })
        })
        .collect())
}

/// `isDefault` → `is-default`; names without capitals and `tag:` forms unchanged.
fn documented_name(name: &str) -> String {
    if name.starts_with("tag:") || !name.bytes().any(|b| b.is_ascii_uppercase()) {
        return name.to_owned();
    }
    let mut out = String::with_capacity(name.len() + 4);
    let mut prev_lower = false;
    for c in name.chars() {
        if c.is_ascii_uppercase() {
            if prev_lower {
                out.push('-');
            }
            out.push(c.to_ascii_lowercase());
            prev_lower = false;
        } else {
            out.push(c);
            prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        }
    }
    out
}

pub fn unknown_filter(name: &str) -> Ec2Error {
    Ec2Error::invalid_value(format!("The filter '{name}' is invalid"))
}

/// `*` matches any run of characters, `?` any one; everything else is literal and
/// case-sensitive.
pub fn wildcard(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    #[test]
    fn legacy_camel_case_names_mean_the_documented_ones() {
        for (given, documented) in [
            ("isDefault", "is-default"),
            ("vpcId", "vpc-id"),
            ("availabilityZone", "availability-zone"),
            ("defaultForAz", "default-for-az"),
            ("attachment.instanceId", "attachment.instance-id"),
            ("instance-state-name", "instance-state-name"),
            ("tag:CostCenter", "tag:CostCenter"),
        ] {
            assert_eq!(Filter::new(given, vec![]).name, documented, "{given}");
        }
    }
    use super::*;

    #[test]
    fn wildcards() {
        assert!(wildcard("web*", "web-1"));
        assert!(wildcard("*", ""));
        assert!(wildcard("a?c", "abc"));
        assert!(!wildcard("a?c", "ac"));
        assert!(!wildcard("Web*", "web"));
        assert!(wildcard("*-1", "us-east-1"));
        assert!(wildcard("t3.*", "t3.micro"));
        assert!(!wildcard("t3.*", "t3a.micro"));
    }

    #[test]
    fn filters_and_across_or_within() {
        let items = vec![("a", "x"), ("b", "y"), ("c", "x")];
        let field = |i: &(&str, &str), name: &str| match name {
            "name" => Field::one(i.0),
            "kind" => Field::one(i.1),
            _ => Field::Unknown,
        };
        let filters = vec![Filter::new("kind", vec!["x".into()]), Filter::new("name", vec!["a".into(), "b".into()])];
        let known = ["name", "kind"];
        let out = apply(items, &filters, &known, field, |_| vec![]).expect("apply");
        assert_eq!(out, vec![("a", "x")]);
        // An unknown name is refused even when there is nothing to filter.
        let bad = apply(Vec::new(), &[Filter::new("nope", vec![])], &known, field, |_| vec![]);
        assert_eq!(bad.map_err(|e| e.code), Err("InvalidParameterValue".to_string()));
    }
}
