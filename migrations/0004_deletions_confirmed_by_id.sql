-- A full pass now confirms every deletion by asking Kommo for the lead by id
-- (see README "How the sync stays exact"), so the flags that guarded its
-- deletions against empty listings and unread seconds are gone.
ALTER TABLE sync_state DROP COLUMN full_pass_walk_saw;
ALTER TABLE sync_state DROP COLUMN full_pass_incomplete;

-- Leads Kommo sent that could not be stored (no usable id), per run.
ALTER TABLE sync_runs ADD COLUMN leads_skipped INTEGER NOT NULL DEFAULT 0;
