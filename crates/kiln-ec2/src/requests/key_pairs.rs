//! Key pair requests.

use base64::Engine;
use kiln_types::KeyPairId;
pub use kiln_types::KeyType;

use super::{ids, tag_specifications, Decode, Tag};
use crate::{Ec2Error, Filter, Params};

fn key_name(p: &Params) -> Result<String, Ec2Error> {
    let name = p.required("KeyName")?;
    if name.len() > 255 || !name.is_ascii() {
        return Err(Ec2Error::invalid_value(format!(
            "Value ({name}) for parameter KeyName is invalid. Key names are at most 255 ASCII characters."
        )));
    }
    Ok(name)
}

#[derive(Debug, Clone, PartialEq)]
pub struct CreateKeyPair {
    pub key_name: String,
    pub key_type: KeyType,
    pub tags: Vec<Tag>,
}

impl Decode for CreateKeyPair {
    fn decode(p: &Params) -> Result<Self, Ec2Error> {
        let key_type = match p.get("KeyType") {
            None | Some("rsa") => KeyType::Rsa,
            Some("ed25519") => KeyType::Ed25519,
            Some(other) => {
                return Err(Ec2Error::invalid_value(format!(
                    "Value ({other}) for parameter KeyType is invalid. Valid values: rsa, ed25519"
                )))
            }
        };
        match p.get("KeyFormat") {
            None | Some("pem") => {}
            Some("ppk") => return Err(Ec2Error::invalid_value("KeyFormat ppk is not supported by Kiln; use pem")),
            Some(other) => {
                return Err(Ec2Error::invalid_value(format!(
                    "Value ({other}) for parameter KeyFormat is invalid. Valid values: pem, ppk"
                )))
            }
        }
        Ok(Self { key_name: key_name(p)?, key_type, tags: tag_specifications(p, "key-pair")? })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ImportKeyPair {
    pub key_name: String,
    /// The decoded public key text (the wire value is base64).
    pub public_key: String,
    pub tags: Vec<Tag>,
}

impl Decode for ImportKeyPair {
    fn decode(p: &Params) -> Result<Self, Ec2Error> {
        let key_name = key_name(p)?;
        let raw = p.required("PublicKeyMaterial")?;
        let bad = || Ec2Error::new("InvalidKey.Format", "Key is not in valid OpenSSH public key format");
        // The SDKs base64 the blob; a hand-written client may send the key line as is.
        let public_key = if raw.starts_with("ssh-") {
            raw
        } else {
            let bytes = base64::engine::general_purpose::STANDARD.decode(raw.trim()).map_err(|_| bad())?;
            String::from_utf8(bytes).map_err(|_| bad())?
        };
        Ok(Self { key_name, public_key, tags: tag_specifications(p, "key-pair")? })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DescribeKeyPairs {
    pub key_names: Vec<String>,
    pub key_pair_ids: Vec<KeyPairId>,
    pub include_public_key: bool,
    pub filters: Vec<Filter>,
}

impl Decode for DescribeKeyPairs {
    fn decode(p: &Params) -> Result<Self, Ec2Error> {
        Ok(Self {
            key_names: p.list("KeyName"),
            key_pair_ids: ids(p, "KeyPairId")?,
            include_public_key: p.flag("IncludePublicKey")?,
            filters: p.filters()?,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum KeyRef {
    Name(String),
    Id(KeyPairId),
}

#[derive(Debug, Clone, PartialEq)]
pub struct DeleteKeyPair {
    pub key: KeyRef,
}

impl Decode for DeleteKeyPair {
    fn decode(p: &Params) -> Result<Self, Ec2Error> {
        let key = match (p.get("KeyPairId"), p.get("KeyName")) {
            (Some(id), _) => KeyRef::Id(id.parse()?),
            (None, Some(name)) if !name.is_empty() => KeyRef::Name(name.to_owned()),
            _ => return Err(Ec2Error::missing("KeyName or KeyPairId")),
        };
        Ok(Self { key })
    }
}
