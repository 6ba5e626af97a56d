-- The sinks that took an event: a JSON array of names (`delivered_to`) instead of the
-- comma-separated `sinks_done`. Backslashes and quotes are escaped before the commas become
-- element separators.
ALTER TABLE outbox ADD COLUMN delivered_to TEXT NOT NULL DEFAULT '[]';
UPDATE outbox
SET delivered_to = '["' || REPLACE(REPLACE(REPLACE(sinks_done, '\', '\\'), '"', '\"'), ',', '","') || '"]'
WHERE sinks_done <> '';
ALTER TABLE outbox DROP COLUMN sinks_done;
