-- Indexes every lead write paid for and no documented query needs (see
-- docs/performance.md for what dropping them saved):
-- - leads (updated_at): the queries read alive leads (`alive_leads`,
--   `leads_named`, `is_deleted = 0`), which leads (is_deleted, updated_at)
--   serves;
-- - leads (closed_at): won and lost leads by close date are served by
--   leads (status_id, closed_at);
-- - lead_full_pass_seen (full_pass): read once per full pass, by the query
--   that looks each alive lead up by its key.
DROP INDEX IF EXISTS leads_updated_at;
DROP INDEX IF EXISTS leads_closed_at;
DROP INDEX IF EXISTS lead_full_pass_seen_pass;
