//! A slot's rollout report: the desired state and the candidate's diff added up over the
//! replicas that run the desired revision (this replica's figures live, the others' from their
//! last heartbeat).

use crate::store::{DesiredRow, FleetRow};
use policy_host::rollout::{Staging, diff::DiffReport};
use serde::Serialize;

/// `GET /admin/plugins/{name}/rollout`
#[derive(Debug, Serialize)]
pub struct RolloutReport {
    /// The plugin slot's name.
    pub plugin: String,
    /// The desired-state revision; `None` when the slot has no desired state.
    pub revision: Option<i64>,
    /// `serving`, `shadow` or `canary`.
    pub stage: String,
    /// `sha256:<hex>` of the desired serving version, if one is set.
    pub serving_digest: Option<String>,
    /// `sha256:<hex>` of the staged candidate, if any.
    pub candidate_digest: Option<String>,
    /// The stage plan as stored (share, salt, sampling, abort rule); null without one.
    pub plan: serde_json::Value,
    /// Why the last candidate was aborted.
    pub note: Option<String>,
    /// Replicas whose figures are in the diff.
    pub replicas: Vec<String>,
    /// The candidate's diff, added up over those replicas.
    pub diff: DiffReport,
}

/// Builds the report of `slot`.
pub fn report(
    slot: &str,
    desired: Option<&DesiredRow>,
    fleet: &[FleetRow],
    replica: &str,
    staging: &Staging,
) -> RolloutReport {
    let revision = desired.map(|desired| desired.revision);
    let mut diff = DiffReport::default();
    let mut replicas = Vec::new();
    let live = staging
        .get(slot)
        .filter(|staged| Some(staged.plan.revision) == revision);
    if let Some(staged) = &live {
        diff.merge(&staged.diff.report());
        replicas.push(replica.to_owned());
    }
    for row in fleet
        .iter()
        .filter(|row| row.slot == slot && row.replica != replica && Some(row.revision) == revision)
    {
        if let Some(other) = row
            .diff
            .as_deref()
            .and_then(|text| serde_json::from_str::<DiffReport>(text).ok())
        {
            diff.merge(&other);
            replicas.push(row.replica.clone());
        }
    }
    RolloutReport {
        plugin: slot.to_owned(),
        revision,
        stage: desired.map_or_else(|| "serving".to_owned(), |desired| desired.stage.clone()),
        serving_digest: desired.and_then(|desired| desired.serving_digest.clone()),
        candidate_digest: desired.and_then(|desired| desired.candidate_digest.clone()),
        plan: desired
            .and_then(|desired| serde_json::from_str(&desired.plan).ok())
            .unwrap_or(serde_json::Value::Null),
        note: desired.and_then(|desired| desired.note.clone()),
        replicas,
        diff,
    }
}
