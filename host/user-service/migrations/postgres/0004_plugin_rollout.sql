-- Issue 17: plugin rollout across replicas. Component bytes by digest (base64, so the
-- schema stays portable), the desired version of each slot, and what each replica serves.
CREATE TABLE IF NOT EXISTS plugin_components (
    digest TEXT PRIMARY KEY,
    bytes_base64 TEXT NOT NULL,
    size BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE IF NOT EXISTS plugin_desired (
    slot TEXT PRIMARY KEY,
    serving_digest TEXT,
    serving_settings TEXT NOT NULL DEFAULT '{}',
    candidate_digest TEXT,
    candidate_settings TEXT NOT NULL DEFAULT '{}',
    stage TEXT NOT NULL DEFAULT 'serving',
    plan TEXT NOT NULL DEFAULT '{}',
    revision BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    note TEXT
);

CREATE TABLE IF NOT EXISTS plugin_fleet (
    replica TEXT NOT NULL,
    slot TEXT NOT NULL,
    serving_digest TEXT,
    serving_version TEXT,
    candidate_digest TEXT,
    stage TEXT NOT NULL,
    revision BIGINT NOT NULL,
    last_activation BIGINT,
    last_error TEXT,
    heartbeat BIGINT NOT NULL,
    diff TEXT,
    PRIMARY KEY (replica, slot)
);
