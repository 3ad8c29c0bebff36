-- The alert a run raised, as data: a restarted daemon reads whether the
-- account was closed (blocked or unpaid) from here, not from the text of
-- sync_runs.error. One row per run that raised an alert; sync_runs keeps the
-- columns interface.md fixes.
CREATE TABLE run_alerts (
    run_id INTEGER PRIMARY KEY REFERENCES sync_runs (id),
    alert TEXT NOT NULL
);

-- Runs recorded before this table: their messages said it.
INSERT INTO run_alerts (run_id, alert)
SELECT id, 'account_blocked' FROM sync_runs
WHERE status = 'failed' AND error LIKE 'Kommo returned HTTP 403 Forbidden with an HTML page%';

INSERT INTO run_alerts (run_id, alert)
SELECT id, 'account_unpaid' FROM sync_runs
WHERE status = 'failed' AND error LIKE 'Kommo returned HTTP 402 Payment Required%';

INSERT INTO run_alerts (run_id, alert)
SELECT id, 'token_rejected' FROM sync_runs WHERE status = 'unauthorized'
AND error LIKE 'Kommo returned HTTP 401%';
