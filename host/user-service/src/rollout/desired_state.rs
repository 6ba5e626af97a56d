//! The desired state of a slot as the service reads it: which digest serves, which candidate
//! is staged and how, parsed from a [`DesiredRow`].

use crate::store::DesiredRow;
use policy_host::rollout::{StageKind, StagePlan};
use std::collections::BTreeMap;

/// A version: component digest and the settings over the slot's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    /// `sha256:<hex>`.
    pub digest: String,
    /// Settings over the slot's own, by name.
    pub settings: BTreeMap<String, String>,
}

impl Version {
    /// Identifies the version (digest and settings), to tell whether it is already in place.
    pub fn key(&self) -> String {
        format!(
            "{}\n{}",
            self.digest,
            serde_json::to_string(&self.settings).unwrap_or_default()
        )
    }
}

/// One slot's desired state, parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    /// The plugin slot's name.
    pub slot: String,
    /// `None`: the replica's own source decides.
    pub serving: Option<Version>,
    /// A candidate and how it is staged.
    pub candidate: Option<(Version, StagePlan)>,
    /// The row's revision: goes up by one with every change.
    pub revision: i64,
}

/// The plan as stored (the revision is the row's).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct StoredPlan {
    /// Shadow or canary.
    pub stage: StageKind,
    /// Canary share of accounts, 0–100 (default 0).
    #[serde(default)]
    pub percent: f64,
    /// Mixed into the canary bucket (default empty).
    #[serde(default)]
    pub salt: String,
    /// Shadow: share of decisions also run on the candidate, 0–100 (default 100).
    #[serde(default = "all")]
    pub sample_percent: f64,
    /// Shadow: most candidate evaluations running at once (default 4).
    #[serde(default = "four")]
    pub max_concurrent: u32,
    /// When the candidate is aborted automatically.
    #[serde(default)]
    pub abort: policy_host::rollout::AbortRule,
}

fn all() -> f64 {
    100.0
}

fn four() -> u32 {
    4
}

impl Desired {
    /// Parses a stored row; a malformed field is an error naming the slot.
    pub fn parse(row: &DesiredRow) -> anyhow::Result<Self> {
        let settings = |text: &str| -> anyhow::Result<BTreeMap<String, String>> {
            serde_json::from_str(text)
                .map_err(|error| anyhow::anyhow!("slot {}: stored settings: {error}", row.slot))
        };
        let serving = row
            .serving_digest
            .as_ref()
            .map(|digest| {
                Ok::<_, anyhow::Error>(Version {
                    digest: digest.clone(),
                    settings: settings(&row.serving_settings)?,
                })
            })
            .transpose()?;
        let candidate = match (&row.candidate_digest, row.stage.as_str()) {
            (Some(digest), "shadow" | "canary") => {
                let stored: StoredPlan = serde_json::from_str(&row.plan)
                    .map_err(|error| anyhow::anyhow!("slot {}: stored plan: {error}", row.slot))?;
                let plan = StagePlan {
                    stage: stored.stage,
                    percent: stored.percent,
                    salt: stored.salt,
                    sample_percent: stored.sample_percent,
                    max_concurrent: stored.max_concurrent,
                    abort: stored.abort,
                    revision: row.revision,
                };
                Some((
                    Version {
                        digest: digest.clone(),
                        settings: settings(&row.candidate_settings)?,
                    },
                    plan,
                ))
            }
            _ => None,
        };
        Ok(Self {
            slot: row.slot.clone(),
            serving,
            candidate,
            revision: row.revision,
        })
    }
}

/// `sha256:<hex>` of `bytes`.
pub fn digest_of(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Whether `digest` is written `sha256:` and 64 lower-case hex digits.
pub fn is_digest(digest: &str) -> bool {
    digest.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}
