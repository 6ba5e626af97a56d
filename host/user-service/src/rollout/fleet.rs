//! The fleet view: every replica's rows against the desired state, with the replicas that lag
//! (stale heartbeat, or not on the desired revision or digest) or failed (a refused version)
//! flagged.

use crate::store::{DesiredRow, FleetRow};
use serde::Serialize;
use std::collections::BTreeMap;

/// One replica's state of one slot.
#[derive(Debug, Clone, Serialize)]
pub struct SlotView {
    /// The plugin slot's name.
    pub slot: String,
    /// `sha256:<hex>` of the version serving there, if any.
    pub serving_digest: Option<String>,
    /// The serving plugin's own version string.
    pub serving_version: Option<String>,
    /// `sha256:<hex>` of the staged candidate, if any.
    pub candidate_digest: Option<String>,
    /// `serving`, `shadow` or `canary`.
    pub stage: String,
    /// The desired-state revision the replica has applied.
    pub revision: i64,
    /// The desired-state revision in the database, when the slot has one.
    pub desired_revision: Option<i64>,
    /// Milliseconds since the epoch of the last swap or staging on the replica.
    pub last_activation_ms: Option<i64>,
    /// The replica's last load error for the slot.
    pub last_error: Option<String>,
    /// Not (yet) on the desired revision or serving digest.
    pub lagging: bool,
    /// The last version it was asked to load was refused.
    pub failed: bool,
}

/// One replica.
#[derive(Debug, Clone, Serialize)]
pub struct ReplicaView {
    /// The replica's id (`replica-id`, or `<hostname>:<port>`).
    pub replica: String,
    /// Milliseconds since the epoch of its oldest slot row's heartbeat.
    pub heartbeat_ms: i64,
    /// How old that heartbeat is, in milliseconds.
    pub heartbeat_age_ms: i64,
    /// The heartbeat is older than `lag-after-ms`: the replica may be down.
    pub stale: bool,
    /// Stale, or some slot is not on the desired revision or serving digest.
    pub lagging: bool,
    /// Some slot refused the last version it was asked to load.
    pub failed: bool,
    /// Its state of each slot.
    pub slots: Vec<SlotView>,
}

/// Builds the view from the rows at `now_ms`.
pub fn view(
    fleet: &[FleetRow],
    desired: &[DesiredRow],
    now_ms: i64,
    lag_after_ms: u64,
) -> Vec<ReplicaView> {
    let desired: BTreeMap<&str, &DesiredRow> =
        desired.iter().map(|row| (row.slot.as_str(), row)).collect();
    let mut replicas: BTreeMap<&str, ReplicaView> = BTreeMap::new();
    for row in fleet {
        let wanted = desired.get(row.slot.as_str());
        let lagging = wanted.is_some_and(|wanted| {
            row.revision < wanted.revision
                || wanted
                    .serving_digest
                    .as_ref()
                    .is_some_and(|digest| row.serving_digest.as_ref() != Some(digest))
                || wanted.candidate_digest.is_some() != row.candidate_digest.is_some()
        });
        let slot = SlotView {
            slot: row.slot.clone(),
            serving_digest: row.serving_digest.clone(),
            serving_version: row.serving_version.clone(),
            candidate_digest: row.candidate_digest.clone(),
            stage: row.stage.clone(),
            revision: row.revision,
            desired_revision: wanted.map(|wanted| wanted.revision),
            last_activation_ms: row.last_activation,
            last_error: row.last_error.clone(),
            lagging,
            failed: row.last_error.is_some(),
        };
        let age = now_ms.saturating_sub(row.heartbeat);
        let replica = replicas
            .entry(row.replica.as_str())
            .or_insert_with(|| ReplicaView {
                replica: row.replica.clone(),
                heartbeat_ms: row.heartbeat,
                heartbeat_age_ms: age,
                stale: false,
                lagging: false,
                failed: false,
                slots: Vec::new(),
            });
        if row.heartbeat < replica.heartbeat_ms {
            replica.heartbeat_ms = row.heartbeat;
            replica.heartbeat_age_ms = age;
        }
        replica.stale = replica.heartbeat_age_ms > lag_after_ms as i64;
        replica.lagging |= slot.lagging || replica.stale;
        replica.failed |= slot.failed;
        replica.slots.push(slot);
    }
    replicas.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fleet_row(replica: &str, digest: &str, revision: i64, heartbeat: i64) -> FleetRow {
        FleetRow {
            replica: replica.to_owned(),
            slot: "password-policy".to_owned(),
            serving_digest: Some(digest.to_owned()),
            serving_version: Some("1".to_owned()),
            candidate_digest: None,
            stage: "serving".to_owned(),
            revision,
            last_activation: None,
            last_error: None,
            heartbeat,
            diff: None,
        }
    }

    fn desired(digest: &str, revision: i64) -> DesiredRow {
        DesiredRow {
            slot: "password-policy".to_owned(),
            serving_digest: Some(digest.to_owned()),
            serving_settings: "{}".to_owned(),
            candidate_digest: None,
            candidate_settings: "{}".to_owned(),
            stage: "serving".to_owned(),
            plan: "{}".to_owned(),
            revision,
            updated_at: 0,
            note: None,
        }
    }

    #[test]
    fn flags_the_replica_behind_and_the_silent_one() {
        let rows = [
            fleet_row("a", "sha256:new", 2, 10_000),
            fleet_row("b", "sha256:old", 1, 10_000),
            fleet_row("c", "sha256:new", 2, 1_000),
        ];
        let view = view(&rows, &[desired("sha256:new", 2)], 10_500, 5_000);
        let flags: Vec<(bool, bool)> = view.iter().map(|r| (r.lagging, r.stale)).collect();
        assert_eq!(flags, [(false, false), (true, false), (true, true)]);
    }
}
