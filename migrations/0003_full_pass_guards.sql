-- What decides whether a completing full pass may mark the alive leads it did
-- not see as deleted (see README "How the sync stays exact").

-- 1 once a window walk of the unfinished full pass has listed an alive lead.
-- A pass whose own walks listed nothing marks nothing: an empty listing is far
-- more likely a fault than an account whose every lead was deleted (leads
-- upserted by a --once meanwhile do not count here).
ALTER TABLE sync_state ADD COLUMN full_pass_walk_saw INTEGER NOT NULL DEFAULT 0;

-- 1 when the unfinished full pass met a crowded second it could not read whole
-- (leads kept moving inside it): a lead of it may have been missed, so the
-- pass marks nothing deleted, and the next full pass reads it again.
ALTER TABLE sync_state ADD COLUMN full_pass_incomplete INTEGER NOT NULL DEFAULT 0;

-- A pass left unfinished by an older kommo-sync keeps the old rule: it may
-- mark deletions if it saw any lead.
UPDATE sync_state
SET full_pass_walk_saw = EXISTS (
    SELECT 1 FROM lead_full_pass_seen WHERE lead_full_pass_seen.full_pass = sync_state.full_pass
)
WHERE full_cursor IS NOT NULL;
