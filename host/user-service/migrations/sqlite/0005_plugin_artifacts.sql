-- Issue 17: compile once per deployment. The replica that receives an upload stores its
-- compilation here, by component sha-256 (hex) and engine fingerprint, with an HMAC-SHA256 tag
-- (hex) under the deployment's artifact key; the others verify the tag and deserialize instead
-- of compiling. Bytes as base64, so the schema stays portable.
CREATE TABLE IF NOT EXISTS plugin_artifacts (
    sha256 TEXT NOT NULL,
    engine TEXT NOT NULL,
    artifact_base64 TEXT NOT NULL,
    tag TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (sha256, engine)
);
