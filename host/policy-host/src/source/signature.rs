//! Detached minisign (Ed25519) signatures over a component's bytes, checked against the keys
//! the operator trusts (`[plugins.trust]`) before anything is compiled.
//!
//! A signature file may hold several signatures one after the other (each the usual four
//! minisign lines); an OCI signature artifact holds one per layer. A candidate passes when at
//! least `threshold` distinct trusted keys verified it. Every refusal names the keys that did
//! and did not verify.

use base64::Engine as _;
use serde::Deserialize;
use std::fmt;

/// One trusted key as configured: `{ id = "release", public-key = "RWQ..." }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustedKeyConfig {
    /// The operator's name for the key, reported in decision records and errors.
    pub id: String,
    /// The minisign public key: its base64 line, or the whole `minisign.pub` text.
    #[serde(rename = "public-key")]
    pub public_key: String,
}

/// `[plugins.trust]`: the keys whose signatures count, and how many must agree.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct TrustConfig {
    /// The trusted keys (`keys = [{ id, public-key }]`).
    pub keys: Vec<TrustedKeyConfig>,
    /// How many distinct trusted keys must have signed a candidate (`threshold`, default 1).
    pub threshold: Option<usize>,
}

/// A trust configuration that cannot be used.
#[allow(
    missing_docs,
    reason = "each variant's fields are named in its #[error] message"
)]
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum TrustConfigError {
    /// A key's text is not a minisign public key.
    #[error("[plugins.trust] key `{id}` is not a minisign public key")]
    BadKey { id: String },
    /// Two keys share an id.
    #[error("[plugins.trust] key id `{id}` is configured twice")]
    DuplicateId { id: String },
    /// The threshold is 0 or more than the number of keys.
    #[error(
        "[plugins.trust] threshold = {threshold} must be between 1 and the {keys} configured key(s)"
    )]
    BadThreshold { threshold: usize, keys: usize },
}

/// Why a candidate's signatures were refused. Every variant names what was checked and the
/// trusted keys that did and did not verify it.
#[allow(
    missing_docs,
    reason = "each variant's fields are named in its #[error] message"
)]
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum SignatureError {
    /// No signature at all was found for the candidate.
    #[error("{subject} is not signed (looked in {looked_in}); {report}")]
    Unsigned {
        subject: String,
        looked_in: String,
        report: Box<KeyReport>,
    },
    /// A trusted key's signature is there but does not match these bytes: the component was
    /// changed after signing, or the signature belongs to other content.
    #[error("{subject}: the signature by trusted key(s) {} does not match the component's bytes (tampered, or signed for other content); {report}", list(&report.mismatched))]
    Mismatch {
        subject: String,
        report: Box<KeyReport>,
    },
    /// Every signature was made by a key this host does not trust.
    #[error("{subject} is signed only by key(s) this host does not trust (minisign key id {}); {report}", list(&report.untrusted))]
    UntrustedKey {
        subject: String,
        report: Box<KeyReport>,
    },
    /// Some trusted keys verified the candidate, fewer than the threshold.
    #[error("{subject} is verified by {} trusted key(s), {threshold} required; {report}", report.verified.len())]
    BelowThreshold {
        subject: String,
        threshold: usize,
        report: Box<KeyReport>,
    },
}

/// Which keys verified a candidate and which did not.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyReport {
    /// Ids of trusted keys whose signature verified.
    pub verified: Vec<String>,
    /// Ids of trusted keys that signed, but whose signature does not match the bytes.
    pub mismatched: Vec<String>,
    /// Ids of trusted keys with no signature among the candidate's.
    pub absent: Vec<String>,
    /// Minisign key ids (hex) of signatures by keys that are not trusted.
    pub untrusted: Vec<String>,
    /// Signatures that could not even be parsed.
    pub malformed: usize,
}

impl fmt::Display for KeyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut not_verified: Vec<String> = self
            .mismatched
            .iter()
            .map(|id| format!("{id} (signature does not match)"))
            .collect();
        not_verified.extend(self.absent.iter().map(|id| format!("{id} (no signature)")));
        write!(
            f,
            "verified by: {}; not verified by: {}",
            list(&self.verified),
            list(&not_verified)
        )?;
        if !self.untrusted.is_empty() {
            write!(f, "; untrusted signers: {}", list(&self.untrusted))?;
        }
        if self.malformed > 0 {
            write!(f, "; {} malformed signature(s)", self.malformed)?;
        }
        Ok(())
    }
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join(", ")
    }
}

struct TrustedKey {
    id: String,
    key: minisign_verify::PublicKey,
    key_id: [u8; 8],
}

/// The keys a host trusts and its threshold. Empty when no key is configured.
pub struct TrustPolicy {
    keys: Vec<TrustedKey>,
    threshold: usize,
}

impl fmt::Debug for TrustPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrustPolicy")
            .field(
                "keys",
                &self.keys.iter().map(|key| &key.id).collect::<Vec<_>>(),
            )
            .field("threshold", &self.threshold)
            .finish()
    }
}

impl TrustPolicy {
    /// Parses and checks `[plugins.trust]`.
    pub fn from_config(config: &TrustConfig) -> Result<Self, TrustConfigError> {
        let mut keys: Vec<TrustedKey> = Vec::new();
        for entry in &config.keys {
            if keys.iter().any(|key| key.id == entry.id) {
                return Err(TrustConfigError::DuplicateId {
                    id: entry.id.clone(),
                });
            }
            let bad = || TrustConfigError::BadKey {
                id: entry.id.clone(),
            };
            let text = entry.public_key.trim();
            let base64_line = if text.contains('\n') {
                text.lines().nth(1).ok_or_else(bad)?.trim()
            } else {
                text
            };
            let key = minisign_verify::PublicKey::from_base64(base64_line).map_err(|_| bad())?;
            let raw = base64::engine::general_purpose::STANDARD
                .decode(base64_line)
                .map_err(|_| bad())?;
            let key_id: [u8; 8] = raw
                .get(2..10)
                .ok_or_else(bad)?
                .try_into()
                .map_err(|_| bad())?;
            keys.push(TrustedKey {
                id: entry.id.clone(),
                key,
                key_id,
            });
        }
        let threshold = config.threshold.unwrap_or(1);
        if !keys.is_empty() && (threshold == 0 || threshold > keys.len()) {
            return Err(TrustConfigError::BadThreshold {
                threshold,
                keys: keys.len(),
            });
        }
        Ok(Self { keys, threshold })
    }

    /// True when no key is configured (signatures are then not required by default).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Ids of the trusted keys.
    pub fn key_ids(&self) -> Vec<String> {
        self.keys.iter().map(|key| key.id.clone()).collect()
    }

    /// Checks `signatures` (minisign texts, each possibly holding several signatures) over
    /// `bytes`. Returns the ids of the trusted keys that verified, in configuration order,
    /// when there are at least `threshold` of them.
    pub fn verify(
        &self,
        subject: &str,
        looked_in: &str,
        bytes: &[u8],
        signatures: &[String],
    ) -> Result<Vec<String>, SignatureError> {
        let parsed: Vec<String> = signatures
            .iter()
            .flat_map(|text| split_signatures(text))
            .collect();
        let mut report = KeyReport::default();
        let mut signed_by = vec![false; self.keys.len()];
        let mut verified = vec![false; self.keys.len()];
        for text in &parsed {
            let (Ok(signature), Some(key_id)) = (
                minisign_verify::Signature::decode(text),
                signature_key_id(text),
            ) else {
                report.malformed += 1;
                continue;
            };
            if let Some(index) = self.keys.iter().position(|key| key.key_id == key_id) {
                signed_by[index] = true;
                if self.keys[index]
                    .key
                    .verify(bytes, &signature, false)
                    .is_ok()
                {
                    verified[index] = true;
                }
            } else {
                let hex = format!("{:016X}", u64::from_le_bytes(key_id));
                if !report.untrusted.contains(&hex) {
                    report.untrusted.push(hex);
                }
            }
        }
        for (index, key) in self.keys.iter().enumerate() {
            if verified[index] {
                report.verified.push(key.id.clone());
            } else if signed_by[index] {
                report.mismatched.push(key.id.clone());
            } else {
                report.absent.push(key.id.clone());
            }
        }
        if report.verified.len() >= self.threshold {
            return Ok(report.verified);
        }
        let subject = subject.to_owned();
        let report = Box::new(report);
        Err(if !report.mismatched.is_empty() {
            SignatureError::Mismatch { subject, report }
        } else if parsed.is_empty() {
            SignatureError::Unsigned {
                subject,
                looked_in: looked_in.to_owned(),
                report,
            }
        } else if report.verified.is_empty() && !report.untrusted.is_empty() {
            SignatureError::UntrustedKey { subject, report }
        } else {
            SignatureError::BelowThreshold {
                subject,
                threshold: self.threshold,
                report,
            }
        })
    }
}

/// Splits a text holding one or more minisign signatures into one text per signature (each
/// starts with its `untrusted comment:` line).
pub fn split_signatures(text: &str) -> Vec<String> {
    let mut signatures: Vec<String> = Vec::new();
    for line in text.lines().filter(|line| !line.trim().is_empty()) {
        if line.starts_with("untrusted comment:") || signatures.is_empty() {
            signatures.push(String::new());
        }
        if let Some(current) = signatures.last_mut() {
            current.push_str(line);
            current.push('\n');
        }
    }
    signatures
}

/// The 8-byte key id a minisign signature names (its second line: algorithm, key id, signature).
fn signature_key_id(text: &str) -> Option<[u8; 8]> {
    let line = text.lines().nth(1)?.trim();
    let raw = base64::engine::general_purpose::STANDARD
        .decode(line)
        .ok()?;
    raw.get(2..10)?.try_into().ok()
}

/// A signing key pair, for the `plugin` CLI and the tests (the host itself only verifies).
pub struct SigningKey {
    secret: minisign::SecretKey,
    public: minisign::PublicKey,
}

/// Why signing, or handling a key file, failed.
#[allow(
    missing_docs,
    reason = "each variant's fields are named in its #[error] message"
)]
#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    /// The minisign library refused (a bad key file, an encrypted key...).
    #[error("{what}: {message}")]
    Minisign { what: String, message: String },
}

impl SigningKey {
    /// A fresh, unencrypted key pair.
    pub fn generate() -> Result<Self, SigningError> {
        let pair = minisign::KeyPair::generate_unencrypted_keypair().map_err(|error| {
            SigningError::Minisign {
                what: "generating a key pair".to_owned(),
                message: error.to_string(),
            }
        })?;
        Ok(Self {
            secret: pair.sk,
            public: pair.pk,
        })
    }

    /// Reads an unencrypted minisign secret key (`minisign.key` text).
    pub fn from_secret_key_text(text: &str) -> Result<Self, SigningError> {
        let failed = |error: minisign::PError| SigningError::Minisign {
            what: "reading the secret key".to_owned(),
            message: error.to_string(),
        };
        let boxed = minisign::SecretKeyBox::from_string(text).map_err(failed)?;
        let secret = boxed.into_unencrypted_secret_key().map_err(failed)?;
        let public = minisign::PublicKey::from_secret_key(&secret).map_err(failed)?;
        Ok(Self { secret, public })
    }

    /// The secret key as `minisign.key` text (unencrypted: keep the file private).
    pub fn secret_key_text(&self) -> Result<String, SigningError> {
        self.secret
            .to_box(None)
            .map(minisign::SecretKeyBox::into_string)
            .map_err(|error| SigningError::Minisign {
                what: "writing the secret key".to_owned(),
                message: error.to_string(),
            })
    }

    /// The public key's base64 line: what `[plugins.trust] keys = [{ public-key }]` takes.
    pub fn public_key_base64(&self) -> String {
        self.public.to_base64()
    }

    /// A detached minisign signature over `bytes`, as `.minisig` text.
    pub fn sign(&self, bytes: &[u8], trusted_comment: &str) -> Result<String, SigningError> {
        minisign::sign(
            Some(&self.public),
            &self.secret,
            std::io::Cursor::new(bytes),
            Some(trusted_comment),
            None,
        )
        .map(minisign::SignatureBox::into_string)
        .map_err(|error| SigningError::Minisign {
            what: "signing".to_owned(),
            message: error.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(keys: &[(&str, &SigningKey)], threshold: Option<usize>) -> TrustPolicy {
        TrustPolicy::from_config(&TrustConfig {
            keys: keys
                .iter()
                .map(|(id, key)| TrustedKeyConfig {
                    id: (*id).to_owned(),
                    public_key: key.public_key_base64(),
                })
                .collect(),
            threshold,
        })
        .expect("valid trust config")
    }

    #[test]
    fn each_refusal_has_its_own_error() {
        let a = SigningKey::generate().expect("key");
        let b = SigningKey::generate().expect("key");
        let stranger = SigningKey::generate().expect("key");
        let bytes = b"component bytes";
        let by_a = a.sign(bytes, "t").expect("sign");
        let by_b = b.sign(bytes, "t").expect("sign");
        let one = policy(&[("a", &a)], None);
        assert_eq!(
            one.verify("x", "y", bytes, std::slice::from_ref(&by_a)),
            Ok(vec!["a".to_owned()])
        );
        assert!(matches!(
            one.verify("x", "y", b"tampered", std::slice::from_ref(&by_a)),
            Err(SignatureError::Mismatch { .. })
        ));
        assert!(matches!(
            one.verify("x", "y", bytes, &[]),
            Err(SignatureError::Unsigned { .. })
        ));
        let by_stranger = stranger.sign(bytes, "t").expect("sign");
        assert!(matches!(
            one.verify("x", "y", bytes, &[by_stranger]),
            Err(SignatureError::UntrustedKey { .. })
        ));
        let two = policy(&[("a", &a), ("b", &b)], Some(2));
        let error = two
            .verify("x", "y", bytes, std::slice::from_ref(&by_a))
            .expect_err("below threshold");
        assert!(matches!(error, SignatureError::BelowThreshold { .. }));
        assert!(
            error
                .to_string()
                .contains("verified by: a; not verified by: b")
        );
        // Two signatures concatenated in one file.
        assert_eq!(
            two.verify("x", "y", bytes, &[format!("{by_a}{by_b}")]),
            Ok(vec!["a".to_owned(), "b".to_owned()])
        );
    }

    #[test]
    fn keys_round_trip_through_text() {
        let key = SigningKey::generate().expect("key");
        let again =
            SigningKey::from_secret_key_text(&key.secret_key_text().expect("text")).expect("read");
        assert_eq!(key.public_key_base64(), again.public_key_base64());
    }
}
