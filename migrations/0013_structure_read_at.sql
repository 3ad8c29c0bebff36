-- When the account's structure was last read and written (this machine's
-- clock, Unix seconds; NULL before the first reading). An incremental sync
-- reads the structure again only once this is `sync.structure_refresh_minutes`
-- old, or when a record it wrote names a pipeline, stage, loss reason or
-- custom field the mirror does not hold; a full sync always reads it.
ALTER TABLE sync_state ADD COLUMN structure_read_at INTEGER;
