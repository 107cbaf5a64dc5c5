//! Key pairs: generation (RSA 2048 and ED25519), import of OpenSSH public keys, and
//! fingerprints computed as EC2 computes them for each kind and origin.

use base64::Engine;
use kiln_store::key_pairs::{self, KeyPair};
use kiln_store::Scope;
pub use kiln_types::KeyType;
use kiln_types::ResourceKind;
use md5::{Digest as _, Md5};
use rand::rngs::OsRng;
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::pkcs8::{DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding};
use sha1::Sha1;
use sha2::Sha256;

use crate::{tags, Cloud, Error, Result};

/// A key pair as just created: the private key is returned once, never stored.
pub struct CreatedKeyPair {
    pub key_pair: KeyPair,
    pub private_key_pem: String,
}

fn colon_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

/// EC2's ED25519 fingerprint: base64 of the SHA-256 of the SSH wire blob, padded.
fn ed25519_fingerprint(public: &ssh_key::PublicKey) -> Result<String> {
    let blob = public.to_bytes().map_err(|e| Error::Crypto(e.to_string()))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(Sha256::digest(blob)))
}

/// Generates a key pair: (public key line, private key text, fingerprint).
fn generate(kind: KeyType, name: &str) -> Result<(String, String, String)> {
    let crypto = |e: &dyn std::fmt::Display| Error::Crypto(e.to_string());
    match kind {
        KeyType::Rsa => {
            let private = rsa::RsaPrivateKey::new(&mut OsRng, 2048).map_err(|e| crypto(&e))?;
            // Created RSA keys: SHA-1 of the DER PKCS#8 private key.
            let pkcs8 = private.to_pkcs8_der().map_err(|e| crypto(&e))?;
            let fingerprint = colon_hex(&Sha1::digest(pkcs8.as_bytes()));
            let pem = private.to_pkcs1_pem(LineEnding::LF).map_err(|e| crypto(&e))?.to_string();
            let ssh_public =
                ssh_key::public::RsaPublicKey::try_from(private.to_public_key()).map_err(|e| crypto(&e))?;
            let public = ssh_key::PublicKey::new(ssh_key::public::KeyData::Rsa(ssh_public), name);
            let line = public.to_openssh().map_err(|e| crypto(&e))?;
            Ok((line, pem, fingerprint))
        }
        KeyType::Ed25519 => {
            let mut private =
                ssh_key::PrivateKey::random(&mut OsRng, ssh_key::Algorithm::Ed25519).map_err(|e| crypto(&e))?;
            private.set_comment(name);
            let fingerprint = ed25519_fingerprint(private.public_key())?;
            let pem = private.to_openssh(ssh_key::LineEnding::LF).map_err(|e| crypto(&e))?.to_string();
            let line = private.public_key().to_openssh().map_err(|e| crypto(&e))?;
            Ok((line, pem, fingerprint))
        }
    }
}

/// Reads a public key in any form EC2 imports: an OpenSSH line, SSH2 (RFC 4716), or an
/// RSA SubjectPublicKeyInfo as PEM or base64 DER.
fn read_public_key(text: &str) -> Option<ssh_key::PublicKey> {
    let text = text.trim();
    if text.contains("BEGIN SSH2 PUBLIC KEY") {
        // Header lines hold ':' and may continue with a trailing '\'; the rest is base64.
        let mut body = String::new();
        let mut continued = false;
        for line in text.lines().map(str::trim) {
            if line.starts_with("----") {
                continue;
            }
            if continued || line.contains(':') {
                continued = line.ends_with('\\');
                continue;
            }
            body.push_str(line);
        }
        let blob = base64::engine::general_purpose::STANDARD.decode(body).ok()?;
        return ssh_key::PublicKey::from_bytes(&blob).ok();
    }
    if let Ok(k) = ssh_key::PublicKey::from_openssh(text) {
        return Some(k);
    }
    let der = if text.contains("BEGIN PUBLIC KEY") {
        let body: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
        base64::engine::general_purpose::STANDARD.decode(body).ok()?
    } else {
        let compact: String = text.split_whitespace().collect();
        base64::engine::general_purpose::STANDARD.decode(compact).ok()?
    };
    let rsa_public = rsa::RsaPublicKey::from_public_key_der(&der).ok()?;
    let data = ssh_key::public::RsaPublicKey::try_from(rsa_public).ok()?;
    Some(ssh_key::PublicKey::new(ssh_key::public::KeyData::Rsa(data), ""))
}

/// Parses an imported public key: (kind, OpenSSH line, fingerprint).
pub fn parse_public_key(text: &str) -> Result<(KeyType, String, String)> {
    let bad = || Error::InvalidKeyFormat("Key is not in valid OpenSSH public key format".into());
    let public = read_public_key(text).ok_or_else(bad)?;
    let line = public.to_openssh().map_err(|_| bad())?;
    match public.key_data() {
        ssh_key::public::KeyData::Rsa(k) => {
            let rsa_public = rsa::RsaPublicKey::try_from(k).map_err(|_| bad())?;
            let bits = rsa::traits::PublicKeyParts::size(&rsa_public) * 8;
            if !(1024..=4096).contains(&bits) {
                return Err(Error::InvalidKeyFormat(format!("RSA keys must be 1024 to 4096 bits, not {bits}")));
            }
            // Imported RSA keys: MD5 of the DER SubjectPublicKeyInfo.
            let der = rsa_public.to_public_key_der().map_err(|_| bad())?;
            Ok((KeyType::Rsa, line, colon_hex(&Md5::digest(der.as_bytes()))))
        }
        ssh_key::public::KeyData::Ed25519(_) => Ok((KeyType::Ed25519, line, ed25519_fingerprint(&public)?)),
        _ => Err(Error::InvalidKeyFormat(
            "Key is not in valid OpenSSH public key format: only RSA and ED25519 keys are supported".into(),
        )),
    }
}

impl Cloud {
    pub fn create_key_pair(
        &self,
        scope: &Scope,
        name: &str,
        kind: KeyType,
        tags: &[(String, String)],
    ) -> Result<CreatedKeyPair> {
        let (public_key, private_key_pem, fingerprint) = generate(kind, name)?;
        let key_pair = KeyPair {
            id: ResourceKind::KeyPair.generate(),
            name: name.to_owned(),
            key_type: kind.as_str().to_owned(),
            fingerprint,
            public_key,
            created_at: kiln_store::now(),
        };
        self.insert_key_pair(scope, &key_pair, tags)?;
        Ok(CreatedKeyPair { key_pair, private_key_pem })
    }

    pub fn import_key_pair(
        &self,
        scope: &Scope,
        name: &str,
        public_key: &str,
        tags: &[(String, String)],
    ) -> Result<KeyPair> {
        let (kind, line, fingerprint) = parse_public_key(public_key)?;
        let key_pair = KeyPair {
            id: ResourceKind::KeyPair.generate(),
            name: name.to_owned(),
            key_type: kind.as_str().to_owned(),
            fingerprint,
            public_key: line,
            created_at: kiln_store::now(),
        };
        self.insert_key_pair(scope, &key_pair, tags)?;
        Ok(key_pair)
    }

    fn insert_key_pair(&self, scope: &Scope, k: &KeyPair, tags: &[(String, String)]) -> Result<()> {
        self.store.write(|tx| {
            if !key_pairs::insert(tx, scope, k)? {
                return Err(Error::Duplicate { kind: ResourceKind::KeyPair, name: k.name.clone() });
            }
            tags::put_all(tx, scope, ResourceKind::KeyPair, &k.id, tags)
        })
    }

    /// Key pairs, narrowed to the given names and ids (all must exist).
    pub fn key_pairs(&self, scope: &Scope, names: &[String], ids: &[kiln_types::KeyPairId]) -> Result<Vec<KeyPair>> {
        let all = self.store.read(|c| Ok::<_, Error>(key_pairs::list(c, scope)?))?;
        if let Some(missing) = names.iter().find(|n| !all.iter().any(|k| &k.name == *n)) {
            return Err(Error::not_found(ResourceKind::KeyPair, missing.clone()));
        }
        crate::missing(ids, ResourceKind::KeyPair, |i| all.iter().any(|k| k.id == i))?;
        Ok(all
            .into_iter()
            .filter(|k| {
                (names.is_empty() || names.contains(&k.name)) && (ids.is_empty() || ids.iter().any(|i| k.id == *i))
            })
            .collect())
    }

    /// Deletes a key pair by name or id. Like EC2, deleting a missing key succeeds;
    /// returns the id deleted, if any.
    pub fn delete_key_pair(&self, scope: &Scope, name: Option<&str>, id: Option<&str>) -> Result<Option<String>> {
        self.store.write(|tx| {
            let all = key_pairs::list(tx, scope)?;
            let Some(k) = all.iter().find(|k| Some(k.name.as_str()) == name || Some(k.id.as_str()) == id) else {
                return Ok(None);
            };
            key_pairs::delete(tx, scope, &k.id)?;
            Ok(Some(k.id.clone()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_rsa_keys_have_sha1_fingerprints_and_pkcs1_pem() {
        let (line, pem, fp) = generate(KeyType::Rsa, "k").expect("generate");
        assert!(pem.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
        assert!(line.starts_with("ssh-rsa "));
        assert_eq!(fp.split(':').count(), 20);
        // The fingerprint of the same key imported is the MD5 form instead.
        let (kind, _, imported) = parse_public_key(&line).expect("parse");
        assert_eq!(kind, KeyType::Rsa);
        assert_eq!(imported.split(':').count(), 16);
    }

    #[test]
    fn ed25519_fingerprint_matches_ssh_keygen_with_padding() {
        // `ssh-keygen -lf` printed SHA256:HSnbwVGThMuHl6NxC25zbvq4aXqUG7VNhp/j8xRL5LI for this key.
        let line = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIPeRv2ECfF4Lys99Z25Cyvm8S5sbR+L5Ui7BVZtJo1V test";
        let (kind, _, fp) = parse_public_key(line).expect("parse");
        assert_eq!(kind, KeyType::Ed25519);
        assert_eq!(fp, "HSnbwVGThMuHl6NxC25zbvq4aXqUG7VNhp/j8xRL5LI=");
    }

    #[test]
    fn rfc4716_and_der_forms_import_with_the_same_fingerprint() {
        let (line, _, _) = generate(KeyType::Rsa, "k").expect("generate");
        let (_, _, fp) = parse_public_key(&line).expect("openssh");
        let public = ssh_key::PublicKey::from_openssh(&line).expect("parse");
        let blob = base64::engine::general_purpose::STANDARD.encode(public.to_bytes().expect("blob"));
        let rfc4716 =
            format!("---- BEGIN SSH2 PUBLIC KEY ----\nComment: \"k\"\n{blob}\n---- END SSH2 PUBLIC KEY ----\n");
        assert_eq!(parse_public_key(&rfc4716).expect("rfc4716").2, fp);
        let ssh_key::public::KeyData::Rsa(k) = public.key_data() else { panic!("rsa") };
        let der = rsa::RsaPublicKey::try_from(k).expect("rsa").to_public_key_der().expect("der");
        let b64 = base64::engine::general_purpose::STANDARD.encode(der.as_bytes());
        assert_eq!(parse_public_key(&b64).expect("der").2, fp);
    }

    #[test]
    fn ecdsa_and_garbage_are_refused() {
        let ecdsa = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBEmKSENjQEezOmxkZMy7opKgwFB9nkt5YRrYMjNuG5N87uRgg6CLrbo5wAdT/y6v0mKV0U2w0WZ2YB/++Tpockg= x";
        assert!(matches!(parse_public_key(ecdsa), Err(Error::InvalidKeyFormat(_))));
        assert!(matches!(parse_public_key("not a key"), Err(Error::InvalidKeyFormat(_))));
    }
}
