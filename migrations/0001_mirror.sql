-- The mirror of Kommo leads and the record of sync runs (see README "Schema").

-- One row per lead ever seen; a sync never deletes a row.
CREATE TABLE leads (
    id                   INTEGER PRIMARY KEY,
    name                 TEXT,
    price                INTEGER,
    responsible_user_id  INTEGER,
    group_id             INTEGER,
    status_id            INTEGER,
    pipeline_id          INTEGER,
    loss_reason_id       INTEGER,
    source_id            INTEGER,
    created_by           INTEGER,
    updated_by           INTEGER,
    score                INTEGER,
    account_id           INTEGER,
    labor_cost           INTEGER,
    created_at           INTEGER,
    updated_at           INTEGER,
    closed_at            INTEGER,
    closest_task_at      INTEGER,
    is_deleted           INTEGER NOT NULL DEFAULT 0 CHECK (is_deleted IN (0, 1)),
    deleted_at           INTEGER,
    custom_fields_values TEXT,
    raw                  TEXT NOT NULL,
    synced_at            INTEGER NOT NULL
);

CREATE INDEX leads_updated_at ON leads (updated_at);
CREATE INDEX leads_status ON leads (pipeline_id, status_id);
CREATE INDEX leads_responsible ON leads (responsible_user_id);

-- One row per sync attempt.
CREATE TABLE sync_runs (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    kind           TEXT NOT NULL CHECK (kind IN ('full', 'incremental')),
    started_at     INTEGER NOT NULL,
    finished_at    INTEGER,
    status         TEXT NOT NULL CHECK (status IN ('running', 'ok', 'failed', 'unauthorized', 'interrupted')),
    leads_upserted INTEGER NOT NULL DEFAULT 0,
    requests       INTEGER NOT NULL DEFAULT 0,
    error          TEXT
);

-- Where the syncs stand; exactly one row.
CREATE TABLE sync_state (
    id                   INTEGER PRIMARY KEY CHECK (id = 1),
    -- largest updated_at mirrored so far: incremental syncs start here (minus the overlap)
    incremental_cursor   INTEGER,
    -- largest deletion time seen in with=only_deleted listings
    deleted_cursor       INTEGER,
    -- number of the current (or last) full pass
    full_pass            INTEGER NOT NULL DEFAULT 0,
    -- updated_at the unfinished full pass has reached; NULL when no full pass is unfinished
    full_cursor          INTEGER,
    -- when the unfinished full pass started (Unix seconds)
    full_pass_started_at INTEGER,
    -- created_at up to which lead_deleted / lead_restored events were followed;
    -- set when the first full pass starts
    events_cursor        INTEGER
);
INSERT INTO sync_state (id) VALUES (1);

-- The last full pass in which each lead was seen alive: a full pass marks alive
-- leads it did not see as deleted.
CREATE TABLE lead_full_pass_seen (
    lead_id   INTEGER PRIMARY KEY,
    full_pass INTEGER NOT NULL
);
CREATE INDEX lead_full_pass_seen_pass ON lead_full_pass_seen (full_pass);

-- A full pass walks several updated_at windows at once; each window's
-- progress is kept here so a killed pass resumes every window where it stopped.
CREATE TABLE full_pass_windows (
    full_pass INTEGER NOT NULL,
    window_id INTEGER NOT NULL,
    -- updated_at the window's walk has reached (its next request starts here)
    cursor    INTEGER NOT NULL,
    -- last updated_at of the window (inclusive); NULL for the open window that
    -- runs to the present and finishes last
    end_at    INTEGER,
    done      INTEGER NOT NULL DEFAULT 0 CHECK (done IN (0, 1)),
    PRIMARY KEY (full_pass, window_id)
);
