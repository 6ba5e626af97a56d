-- Every outbox time in one unit, microseconds since the epoch: created_at, next_attempt_at and
-- claimed_until already were; delivered_at and dead_at were Unix seconds.
UPDATE outbox SET delivered_at = delivered_at * 1000000 WHERE delivered_at IS NOT NULL;
UPDATE outbox SET dead_at = dead_at * 1000000 WHERE dead_at IS NOT NULL;
