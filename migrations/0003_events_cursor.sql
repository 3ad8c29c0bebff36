-- Incremental syncs follow lead_deleted / lead_restored events from here on
-- (created_at, Unix seconds); set when the first full pass starts.
ALTER TABLE sync_state ADD COLUMN events_cursor INTEGER;
