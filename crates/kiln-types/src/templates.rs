//! Naming a launch template (by id or by name) and one of its versions (a number,
//! `$Latest` or `$Default`), as requests and the control plane both speak of them.

use std::fmt;

use crate::LaunchTemplateId;

/// A launch template as a request names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateRef {
    Id(LaunchTemplateId),
    Name(String),
}

impl fmt::Display for TemplateRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Id(id) => f.write_str(id),
            Self::Name(name) => f.write_str(name),
        }
    }
}

/// One version of a launch template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionRef {
    Latest,
    Default,
    Number(i64),
}

impl VersionRef {
    /// `$Latest`, `$Default` or a positive number; `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "$Latest" => Some(Self::Latest),
            "$Default" => Some(Self::Default),
            n => n.parse::<i64>().ok().filter(|n| *n >= 1).map(Self::Number),
        }
    }
}

impl fmt::Display for VersionRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Latest => f.write_str("$Latest"),
            Self::Default => f.write_str("$Default"),
            Self::Number(n) => write!(f, "{n}"),
        }
    }
}
