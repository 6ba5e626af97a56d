//! Rollout tables: component bytes by digest, the desired version of each plugin slot, and
//! the fleet (what each replica serves). Portable SQL (TEXT and BIGINT; bytes as base64);
//! the tables come from migration `0004_plugin_rollout`.

use super::Store;
use base64::{Engine as _, engine::general_purpose::STANDARD};
use sqlx::Row;

/// The desired state of one slot (times in milliseconds since the epoch).
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredRow {
    /// The plugin slot's name.
    pub slot: String,
    /// `sha256:<hex>`, or `None`: the replica's own source decides what serves.
    pub serving_digest: Option<String>,
    /// JSON object of settings over the slot's.
    pub serving_settings: String,
    /// `sha256:<hex>` of the staged candidate, if any.
    pub candidate_digest: Option<String>,
    /// JSON object of the candidate's settings over the slot's.
    pub candidate_settings: String,
    /// `serving`, `shadow` or `canary`.
    pub stage: String,
    /// JSON of the stage plan (share, salt, sampling, abort rule).
    pub plan: String,
    /// Goes up by one with every change.
    pub revision: i64,
    /// When it last changed.
    pub updated_at: i64,
    /// Why the last candidate was aborted, when it was.
    pub note: Option<String>,
}

/// What one replica reported for one slot (times in milliseconds since the epoch).
#[derive(Debug, Clone, PartialEq)]
pub struct FleetRow {
    /// The replica's id.
    pub replica: String,
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
    /// When the replica last swapped in or staged a version.
    pub last_activation: Option<i64>,
    /// The replica's last load error for the slot.
    pub last_error: Option<String>,
    /// When the replica wrote this row.
    pub heartbeat: i64,
    /// JSON of the candidate's diff on this replica.
    pub diff: Option<String>,
}

/// A change to a slot's desired state.
#[derive(Debug, Clone)]
pub enum DesiredChange<'a> {
    /// Serve `digest` with `settings`; any candidate is dropped.
    Serve {
        /// `sha256:<hex>` of the stored component.
        digest: &'a str,
        /// JSON object of settings over the slot's.
        settings: &'a str,
    },
    /// Stage `digest` as a candidate (`stage` is `shadow` or `canary`) with `plan`.
    Stage {
        /// `sha256:<hex>` of the stored component.
        digest: &'a str,
        /// JSON object of settings over the slot's.
        settings: &'a str,
        /// `shadow` or `canary`.
        stage: &'a str,
        /// JSON of the stage plan.
        plan: &'a str,
    },
    /// The candidate becomes the serving version.
    Promote,
    /// The candidate is dropped; `note` says why.
    Abort {
        /// Why, kept as the desired state's note.
        note: &'a str,
    },
}

const DESIRED_COLUMNS: &str = "slot, serving_digest, serving_settings, candidate_digest, \
     candidate_settings, stage, plan, revision, updated_at, note";

fn desired_row(row: &sqlx::any::AnyRow) -> sqlx::Result<DesiredRow> {
    Ok(DesiredRow {
        slot: row.try_get(0)?,
        serving_digest: row.try_get(1)?,
        serving_settings: row.try_get(2)?,
        candidate_digest: row.try_get(3)?,
        candidate_settings: row.try_get(4)?,
        stage: row.try_get(5)?,
        plan: row.try_get(6)?,
        revision: row.try_get(7)?,
        updated_at: row.try_get(8)?,
        note: row.try_get(9)?,
    })
}

impl Store {
    /// Stores component bytes under their digest (`sha256:<hex>`); storing them twice is a no-op.
    pub async fn put_component(&self, digest: &str, bytes: &[u8]) -> sqlx::Result<()> {
        sqlx::query(
            "INSERT INTO plugin_components (digest, bytes_base64, size, created_at)
             VALUES ($1, $2, $3, $4) ON CONFLICT (digest) DO NOTHING",
        )
        .bind(digest)
        .bind(STANDARD.encode(bytes))
        .bind(bytes.len() as i64)
        .bind(super::now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The component stored under `digest`, if any.
    pub async fn component(&self, digest: &str) -> anyhow::Result<Option<Vec<u8>>> {
        let row = sqlx::query("SELECT bytes_base64 FROM plugin_components WHERE digest = $1")
            .bind(digest)
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let text: String = row.try_get(0)?;
        let bytes = STANDARD
            .decode(text.as_bytes())
            .map_err(|error| anyhow::anyhow!("component {digest} is stored corrupt: {error}"))?;
        Ok(Some(bytes))
    }

    /// Whether a component is stored under `digest`.
    pub async fn has_component(&self, digest: &str) -> sqlx::Result<bool> {
        Ok(
            sqlx::query("SELECT 1 FROM plugin_components WHERE digest = $1")
                .bind(digest)
                .fetch_optional(&self.pool)
                .await?
                .is_some(),
        )
    }

    /// Every slot's desired state.
    pub async fn desired_all(&self) -> sqlx::Result<Vec<DesiredRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {DESIRED_COLUMNS} FROM plugin_desired ORDER BY slot"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(desired_row).collect()
    }

    /// One slot's desired state.
    pub async fn desired(&self, slot: &str) -> sqlx::Result<Option<DesiredRow>> {
        let row = sqlx::query(&format!(
            "SELECT {DESIRED_COLUMNS} FROM plugin_desired WHERE slot = $1"
        ))
        .bind(slot)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(desired_row).transpose()
    }

    /// Applies `change` to `slot`'s desired state in one statement and returns the new row;
    /// `None` when the change needs a candidate and there is none (promote, abort), or when
    /// `only_revision` is given and the row has moved on (an automatic abort of an old plan).
    pub async fn change_desired(
        &self,
        slot: &str,
        change: DesiredChange<'_>,
        only_revision: Option<i64>,
    ) -> sqlx::Result<Option<DesiredRow>> {
        let now = super::now_micros() / 1000;
        let returning = format!("RETURNING {DESIRED_COLUMNS}");
        let row = match change {
            DesiredChange::Serve { digest, settings } => {
                sqlx::query(&format!(
                    "INSERT INTO plugin_desired (slot, serving_digest, serving_settings, stage, plan, revision, updated_at)
                     VALUES ($1, $2, $3, 'serving', '{{}}', 1, $4)
                     ON CONFLICT (slot) DO UPDATE SET serving_digest = $2, serving_settings = $3,
                       candidate_digest = NULL, candidate_settings = '{{}}', stage = 'serving',
                       plan = '{{}}', revision = plugin_desired.revision + 1, updated_at = $4, note = NULL
                     {returning}"
                ))
                .bind(slot)
                .bind(digest)
                .bind(settings)
                .bind(now)
                .fetch_optional(&self.pool)
                .await?
            }
            DesiredChange::Stage {
                digest,
                settings,
                stage,
                plan,
            } => {
                sqlx::query(&format!(
                    "INSERT INTO plugin_desired (slot, candidate_digest, candidate_settings, stage, plan, revision, updated_at)
                     VALUES ($1, $2, $3, $4, $5, 1, $6)
                     ON CONFLICT (slot) DO UPDATE SET candidate_digest = $2, candidate_settings = $3,
                       stage = $4, plan = $5, revision = plugin_desired.revision + 1, updated_at = $6, note = NULL
                     {returning}"
                ))
                .bind(slot)
                .bind(digest)
                .bind(settings)
                .bind(stage)
                .bind(plan)
                .bind(now)
                .fetch_optional(&self.pool)
                .await?
            }
            DesiredChange::Promote => {
                sqlx::query(&format!(
                    "UPDATE plugin_desired SET serving_digest = candidate_digest,
                       serving_settings = candidate_settings, candidate_digest = NULL,
                       candidate_settings = '{{}}', stage = 'serving', plan = '{{}}',
                       revision = revision + 1, updated_at = $2, note = NULL
                     WHERE slot = $1 AND candidate_digest IS NOT NULL
                     {returning}"
                ))
                .bind(slot)
                .bind(now)
                .fetch_optional(&self.pool)
                .await?
            }
            DesiredChange::Abort { note } => {
                sqlx::query(&format!(
                    "UPDATE plugin_desired SET candidate_digest = NULL, candidate_settings = '{{}}',
                       stage = 'serving', plan = '{{}}', revision = revision + 1, updated_at = $2,
                       note = $3
                     WHERE slot = $1 AND candidate_digest IS NOT NULL AND ($4 < 0 OR revision = $4)
                     {returning}"
                ))
                .bind(slot)
                .bind(now)
                .bind(note)
                .bind(only_revision.unwrap_or(-1))
                .fetch_optional(&self.pool)
                .await?
            }
        };
        row.as_ref().map(desired_row).transpose()
    }

    /// Sends the rollout hint to every replica listening (PostgreSQL only; a no-op elsewhere).
    pub async fn notify_desired_changed(&self, slot: &str) -> sqlx::Result<()> {
        // Selected as a number: some drivers cannot decode `void`.
        sqlx::query("SELECT 1 FROM (SELECT pg_notify($1, $2)) AS sent")
            .bind(crate::rollout::sync::CHANNEL)
            .bind(slot)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Records what this replica serves in one slot (one row per replica and slot).
    pub async fn report_fleet(&self, row: &FleetRow) -> sqlx::Result<()> {
        sqlx::query(
            "INSERT INTO plugin_fleet (replica, slot, serving_digest, serving_version, candidate_digest,
               stage, revision, last_activation, last_error, heartbeat, diff)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
             ON CONFLICT (replica, slot) DO UPDATE SET serving_digest = $3, serving_version = $4,
               candidate_digest = $5, stage = $6, revision = $7, last_activation = $8,
               last_error = $9, heartbeat = $10, diff = $11",
        )
        .bind(&row.replica)
        .bind(&row.slot)
        .bind(&row.serving_digest)
        .bind(&row.serving_version)
        .bind(&row.candidate_digest)
        .bind(&row.stage)
        .bind(row.revision)
        .bind(row.last_activation)
        .bind(&row.last_error)
        .bind(row.heartbeat)
        .bind(&row.diff)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Every replica's report, by replica then slot.
    pub async fn fleet(&self) -> sqlx::Result<Vec<FleetRow>> {
        let rows = sqlx::query(
            "SELECT replica, slot, serving_digest, serving_version, candidate_digest, stage,
               revision, last_activation, last_error, heartbeat, diff
             FROM plugin_fleet ORDER BY replica, slot",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(FleetRow {
                    replica: row.try_get(0)?,
                    slot: row.try_get(1)?,
                    serving_digest: row.try_get(2)?,
                    serving_version: row.try_get(3)?,
                    candidate_digest: row.try_get(4)?,
                    stage: row.try_get(5)?,
                    revision: row.try_get(6)?,
                    last_activation: row.try_get(7)?,
                    last_error: row.try_get(8)?,
                    heartbeat: row.try_get(9)?,
                    diff: row.try_get(10)?,
                })
            })
            .collect()
    }
}
