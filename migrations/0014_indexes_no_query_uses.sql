-- Indexes every lead write paid for and no documented query uses (the
-- query plans of docs/queries.sql, checked by tests/queries.rs, search
-- leads through leads (is_deleted, updated_at) and leads (pipeline_id,
-- status_id), the stage history through its own two indexes, tags through
-- lead_tags (tag_id)). Dropping these cut the CPU of a backfill of 100,000
-- leads by about a fifth (docs/performance.md):
-- - leads (status_id, closed_at) and leads (created_at): won, lost and
--   created leads by date are read among the alive leads;
-- - leads (responsible_user_id): leads per manager are counted over the
--   alive leads;
-- - lead_field_values (field_id, enum_id): a breakdown by a field reads
--   each alive lead's values by their key (lead_id, field_id, position).
DROP INDEX IF EXISTS leads_status_id;
DROP INDEX IF EXISTS leads_created_at;
DROP INDEX IF EXISTS leads_responsible;
DROP INDEX IF EXISTS lead_field_values_field;
