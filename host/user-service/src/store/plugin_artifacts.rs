//! Compiled plugin components shared between replicas (table `plugin_artifacts`, migration
//! `0005`): by component sha-256 and engine fingerprint, with the tag that authenticates them.
//! The store neither signs nor verifies: a row is untrusted until `rollout::artifacts` checks
//! its tag.

use super::Store;
use base64::{Engine as _, engine::general_purpose::STANDARD};
use sqlx::Row;

/// One stored artifact, as read (not verified).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactRow {
    /// The compiled bytes.
    pub artifact: Vec<u8>,
    /// The HMAC-SHA256 tag as stored (decoded from hex).
    pub tag: Vec<u8>,
}

impl Store {
    /// Stores the artifact of component `sha256` (hex) for engine `engine`, replacing any row
    /// there (a forged or stale one included: the publisher holds the key).
    pub async fn put_artifact(
        &self,
        sha256: &str,
        engine: &str,
        artifact: &[u8],
        tag: &[u8],
    ) -> sqlx::Result<()> {
        sqlx::query(
            "INSERT INTO plugin_artifacts (sha256, engine, artifact_base64, tag, created_at)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (sha256, engine) DO UPDATE SET artifact_base64 = $3, tag = $4,
               created_at = $5",
        )
        .bind(sha256)
        .bind(engine)
        .bind(STANDARD.encode(artifact))
        .bind(hex::encode(tag))
        .bind(super::now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The artifact stored for component `sha256` (hex) and engine `engine`, if any; an error
    /// when the row is not even decodable.
    pub async fn artifact(
        &self,
        sha256: &str,
        engine: &str,
    ) -> anyhow::Result<Option<ArtifactRow>> {
        let row = sqlx::query(
            "SELECT artifact_base64, tag FROM plugin_artifacts WHERE sha256 = $1 AND engine = $2",
        )
        .bind(sha256)
        .bind(engine)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let artifact: String = row.try_get(0)?;
        let tag: String = row.try_get(1)?;
        let corrupt = |error: &dyn std::fmt::Display| {
            anyhow::anyhow!("the artifact of {sha256} is stored corrupt: {error}")
        };
        Ok(Some(ArtifactRow {
            artifact: STANDARD
                .decode(artifact.as_bytes())
                .map_err(|error| corrupt(&error))?,
            tag: hex::decode(tag).map_err(|error| corrupt(&error))?,
        }))
    }
}
