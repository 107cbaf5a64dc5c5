//! Query parameters as the EC2 protocol sends them: flat `Name.N.Member` keys, decoded
//! here into lists and structures so that request decoding never touches raw keys twice.

use std::collections::BTreeMap;

use crate::filter::Filter;
use crate::Ec2Error;

/// The parameters of one request, from the query string and the form body together.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params {
    map: BTreeMap<String, String>,
}

impl Params {
    /// Parameters from a query string and an `application/x-www-form-urlencoded` body.
    /// A key given twice keeps its last value.
    pub fn parse(query: &str, body: &[u8]) -> Self {
        let mut map = BTreeMap::new();
        for (k, v) in form_urlencoded::parse(query.as_bytes()).chain(form_urlencoded::parse(body)) {
            map.insert(k.into_owned(), v.into_owned());
        }
        Self { map }
    }

    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self { map: pairs.into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect() }
    }

    pub fn from_owned(pairs: impl IntoIterator<Item = (String, String)>) -> Self {
        Self { map: pairs.into_iter().collect() }
    }

    /// Every parameter, sorted by key.
    pub fn pairs(&self) -> Vec<(String, String)> {
        self.map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.map.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// A parameter's value; an empty one counts as absent, as EC2 reads optional
    /// parameters (Terraform's AWS provider sends `Placement.AvailabilityZone=`).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.raw(key).filter(|v| !v.is_empty())
    }

    /// A parameter's value as sent, empty included: for the few where empty means
    /// something (a tag's value, `NoDevice`).
    pub fn raw(&self, key: &str) -> Option<&str> {
        self.map.get(key).map(String::as_str)
    }

    pub fn string(&self, key: &str) -> Option<String> {
        self.get(key).map(str::to_owned)
    }

    pub fn required(&self, key: &str) -> Result<String, Ec2Error> {
        self.string(key).ok_or_else(|| Ec2Error::missing(key))
    }

    /// A boolean: `true`/`false`, leniently also `True`, `1`, `0`.
    pub fn bool(&self, key: &str) -> Result<Option<bool>, Ec2Error> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => match v.to_ascii_lowercase().as_str() {
                "true" | "1" => Ok(Some(true)),
                "false" | "0" => Ok(Some(false)),
                _ => Err(Ec2Error::invalid_value(format!(
                    "Value ({v}) for parameter {key} is invalid. Expected a boolean."
                ))),
            },
        }
    }

    pub fn flag(&self, key: &str) -> Result<bool, Ec2Error> {
        Ok(self.bool(key)?.unwrap_or(false))
    }

    /// One of a closed set (`HttpTokens`, `VolumeType` …); empty is absent, as on EC2.
    pub fn choice<T>(&self, key: &str) -> Result<Option<T>, Ec2Error>
    where
        T: std::str::FromStr<Err = kiln_types::ChoiceError>,
    {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.parse().map(Some).map_err(Ec2Error::from),
        }
    }

    pub fn int(&self, key: &str) -> Result<Option<i64>, Ec2Error> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.trim().parse::<i64>().map(Some).map_err(|_| {
                Ec2Error::invalid_value(format!("Value ({v}) for parameter {key} is invalid. Expected an integer."))
            }),
        }
    }

    /// The values of `prefix.1`, `prefix.2`, … in numeric index order.
    pub fn list(&self, prefix: &str) -> Vec<String> {
        let mut items: Vec<(u32, &String)> = self
            .map
            .iter()
            .filter_map(|(k, v)| {
                let idx = k.strip_prefix(prefix)?.strip_prefix('.')?;
                idx.parse::<u32>().ok().map(|n| (n, v))
            })
            .collect();
        items.sort_by_key(|(n, _)| *n);
        items.into_iter().map(|(_, v)| v.clone()).collect()
    }

    /// The structures `prefix.N.*`, each as its own `Params`, in numeric index order.
    pub fn members(&self, prefix: &str) -> Vec<Params> {
        let mut groups: BTreeMap<u32, Params> = BTreeMap::new();
        for (k, v) in &self.map {
            let Some(rest) = k.strip_prefix(prefix).and_then(|r| r.strip_prefix('.')) else {
                continue;
            };
            let Some((idx, member)) = rest.split_once('.') else {
                continue;
            };
            let Ok(n) = idx.parse::<u32>() else { continue };
            groups.entry(n).or_default().map.insert(member.to_owned(), v.clone());
        }
        groups.into_values().collect()
    }

    /// The structure `prefix.*` as its own `Params`.
    pub fn sub(&self, prefix: &str) -> Params {
        let map = self
            .map
            .iter()
            .filter_map(|(k, v)| {
                let member = k.strip_prefix(prefix)?.strip_prefix('.')?;
                Some((member.to_owned(), v.clone()))
            })
            .collect();
        Params { map }
    }

    /// `Filter.N.Name` with `Filter.N.Value.M`.
    pub fn filters(&self) -> Result<Vec<Filter>, Ec2Error> {
        self.members("Filter")
            .into_iter()
            .map(|f| {
                let name = f.get("Name").filter(|n| !n.is_empty()).ok_or_else(|| Ec2Error::missing("Filter.N.Name"))?;
                Ok(Filter::new(name, f.list("Value")))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_sort_numerically_and_tolerate_gaps() {
        let p = Params::parse("", b"GroupId.10=c&GroupId.2=b&GroupId.1=a&GroupIdX.1=z");
        assert_eq!(p.list("GroupId"), vec!["a", "b", "c"]);
    }

    #[test]
    fn nested_structures_decode() {
        let body = b"TagSpecification.1.ResourceType=vpc&TagSpecification.1.Tag.1.Key=Name\
&TagSpecification.1.Tag.1.Value=web&TagSpecification.1.Tag.2.Key=env&TagSpecification.1.Tag.2.Value=&\
IpPermissions.1.IpRanges.1.CidrIp=10.0.0.0%2F8&IpPermissions.1.IpProtocol=tcp";
        let p = Params::parse("", body);
        let specs = p.members("TagSpecification");
        assert_eq!(specs.len(), 1);
        assert_eq!(specs[0].get("ResourceType"), Some("vpc"));
        let tags = specs[0].members("Tag");
        assert_eq!(tags[0].get("Key"), Some("Name"));
        assert_eq!(tags[1].raw("Value"), Some(""));
        assert_eq!(tags[1].get("Value"), None, "empty is absent");
        let perms = p.members("IpPermissions");
        assert_eq!(perms[0].members("IpRanges")[0].get("CidrIp"), Some("10.0.0.0/8"));
    }

    #[test]
    fn filters_decode_with_values() {
        let p = Params::parse("Filter.1.Name=tag%3AName&Filter.1.Value.2=b&Filter.1.Value.1=a", b"");
        let f = p.filters().expect("filters");
        assert_eq!(f[0].name, "tag:Name");
        assert_eq!(f[0].values, vec!["a", "b"]);
        assert!(Params::parse("Filter.1.Value.1=a", b"").filters().is_err());
    }

    #[test]
    fn scalars_are_typed() {
        let p = Params::parse("A=true&B=nope&C=12&D=x", b"");
        assert_eq!(p.bool("A"), Ok(Some(true)));
        assert!(p.bool("B").is_err());
        assert_eq!(p.int("C"), Ok(Some(12)));
        assert!(p.int("D").is_err());
        assert_eq!(p.required("Z").map_err(|e| e.code), Err("MissingParameter".into()));
    }

    #[test]
    fn query_and_body_merge() {
        let p = Params::parse("Action=DescribeVpcs", b"Version=2016-11-15");
        assert_eq!(p.get("Action"), Some("DescribeVpcs"));
        assert_eq!(p.get("Version"), Some("2016-11-15"));
    }
}
