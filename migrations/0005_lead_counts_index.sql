-- Lead counts (alive, deleted, newest change) for --status, the demo and every
-- /metrics scrape read only these two columns: a covering index turns a scan
-- of the whole leads table into a scan of a small index.
CREATE INDEX leads_deleted_updated ON leads (is_deleted, updated_at);
