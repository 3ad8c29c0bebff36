-- Where each entity's syncs resume (leads, contacts, companies: see
-- src/kommo/entity.rs). The leads' cursors move here from sync_state; the
-- full pass stays one pass (its number, start and progress in sync_state)
-- that walks each entity in turn, its windows now per entity.

CREATE TABLE entity_sync_state (
    entity             TEXT PRIMARY KEY,
    -- largest updated_at mirrored so far: incremental syncs start here (minus the overlap)
    incremental_cursor INTEGER,
    -- largest deletion time seen in with=only_deleted listings (leads only)
    deleted_cursor     INTEGER,
    -- the last full pass whose walk of this entity completed, deletions confirmed
    full_pass_done     INTEGER NOT NULL DEFAULT 0
);
INSERT INTO entity_sync_state (entity, incremental_cursor, deleted_cursor, full_pass_done)
SELECT 'leads', incremental_cursor, deleted_cursor,
       CASE WHEN full_cursor IS NULL THEN full_pass ELSE full_pass - 1 END
FROM sync_state WHERE id = 1;
INSERT INTO entity_sync_state (entity) VALUES ('contacts'), ('companies');

ALTER TABLE sync_state DROP COLUMN incremental_cursor;
ALTER TABLE sync_state DROP COLUMN deleted_cursor;

-- The windows of the unfinished full pass, per entity.
CREATE TABLE full_pass_windows_by_entity (
    full_pass INTEGER NOT NULL,
    entity    TEXT NOT NULL DEFAULT 'leads',
    window_id INTEGER NOT NULL,
    -- updated_at the window's walk has reached (its next request starts here)
    cursor    INTEGER NOT NULL,
    -- last updated_at of the window (inclusive); NULL for the open window
    end_at    INTEGER,
    done      INTEGER NOT NULL DEFAULT 0 CHECK (done IN (0, 1)),
    PRIMARY KEY (full_pass, entity, window_id)
);
INSERT INTO full_pass_windows_by_entity (full_pass, entity, window_id, cursor, end_at, done)
SELECT full_pass, 'leads', window_id, cursor, end_at, done FROM full_pass_windows;
-- A pass left unfinished before windows existed resumes its leads from
-- where it stopped.
INSERT INTO full_pass_windows_by_entity (full_pass, entity, window_id, cursor, end_at, done)
SELECT full_pass, 'leads', 0, full_cursor, NULL, 0 FROM sync_state
WHERE id = 1 AND full_cursor IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM full_pass_windows_by_entity);
DROP TABLE full_pass_windows;
ALTER TABLE full_pass_windows_by_entity RENAME TO full_pass_windows;
