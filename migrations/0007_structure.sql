-- The account's structure, the leads' stage history, and the views that give
-- the ids names (see README "Schema").
--
-- Structure rows are never removed: a row Kommo no longer lists gets
-- is_deleted = 1, and 0 again if it reappears. synced_at is the Unix second
-- of the row's last write. raw is the element as received (unknown fields
-- included).

-- The account (one row; another id would mean the mirror was pointed at a
-- different account).
CREATE TABLE account (
    id         INTEGER PRIMARY KEY,
    name       TEXT,
    subdomain  TEXT,
    currency   TEXT,
    -- _embedded.datetime_settings.timezone, e.g. 'Europe/Madrid'
    timezone   TEXT,
    raw        TEXT NOT NULL,
    is_deleted INTEGER NOT NULL DEFAULT 0 CHECK (is_deleted IN (0, 1)),
    synced_at  INTEGER NOT NULL
);

CREATE TABLE pipelines (
    id         INTEGER PRIMARY KEY,
    name       TEXT,
    sort       INTEGER,
    is_main    INTEGER,
    is_archive INTEGER,
    raw        TEXT NOT NULL,
    is_deleted INTEGER NOT NULL DEFAULT 0 CHECK (is_deleted IN (0, 1)),
    synced_at  INTEGER NOT NULL
);

-- The stages of each pipeline. 142 (won) and 143 (lost) are in every
-- pipeline, so the key is (pipeline_id, id).
CREATE TABLE statuses (
    pipeline_id INTEGER NOT NULL,
    id          INTEGER NOT NULL,
    name        TEXT,
    sort        INTEGER,
    -- Kommo's type: 0 a regular stage, 1 the "unsorted" (incoming) stage
    type        INTEGER,
    color       TEXT,
    is_editable INTEGER,
    raw         TEXT NOT NULL,
    is_deleted  INTEGER NOT NULL DEFAULT 0 CHECK (is_deleted IN (0, 1)),
    synced_at   INTEGER NOT NULL,
    PRIMARY KEY (pipeline_id, id)
);

CREATE TABLE users (
    id         INTEGER PRIMARY KEY,
    name       TEXT,
    email      TEXT,
    is_admin   INTEGER,
    is_active  INTEGER,
    raw        TEXT NOT NULL,
    is_deleted INTEGER NOT NULL DEFAULT 0 CHECK (is_deleted IN (0, 1)),
    synced_at  INTEGER NOT NULL
);

-- Lead custom field definitions.
CREATE TABLE custom_fields (
    id          INTEGER PRIMARY KEY,
    name        TEXT,
    -- Kommo's field type: text, numeric, checkbox, select, multiselect, date, ...
    type        TEXT,
    code        TEXT,
    sort        INTEGER,
    is_api_only INTEGER,
    group_id    TEXT,
    raw         TEXT NOT NULL,
    is_deleted  INTEGER NOT NULL DEFAULT 0 CHECK (is_deleted IN (0, 1)),
    synced_at   INTEGER NOT NULL
);

-- The options of select, multiselect and radiobutton fields.
CREATE TABLE custom_field_enums (
    field_id   INTEGER NOT NULL,
    id         INTEGER NOT NULL,
    value      TEXT,
    sort       INTEGER,
    code       TEXT,
    is_deleted INTEGER NOT NULL DEFAULT 0 CHECK (is_deleted IN (0, 1)),
    synced_at  INTEGER NOT NULL,
    PRIMARY KEY (field_id, id)
);

CREATE TABLE loss_reasons (
    id         INTEGER PRIMARY KEY,
    name       TEXT,
    sort       INTEGER,
    raw        TEXT NOT NULL,
    is_deleted INTEGER NOT NULL DEFAULT 0 CHECK (is_deleted IN (0, 1)),
    synced_at  INTEGER NOT NULL
);

CREATE TABLE tags (
    id         INTEGER PRIMARY KEY,
    name       TEXT,
    color      TEXT,
    raw        TEXT NOT NULL,
    is_deleted INTEGER NOT NULL DEFAULT 0 CHECK (is_deleted IN (0, 1)),
    synced_at  INTEGER NOT NULL
);

-- One row per stage change of a lead (lead_status_changed events), kept
-- once per event id however often the events are read again.
CREATE TABLE lead_status_changes (
    event_id         TEXT PRIMARY KEY,
    lead_id          INTEGER NOT NULL,
    from_pipeline_id INTEGER,
    from_status_id   INTEGER,
    to_pipeline_id   INTEGER,
    to_status_id     INTEGER,
    -- the event's created_at (Unix seconds)
    changed_at       INTEGER NOT NULL,
    -- the user who moved the lead (0: an integration or a robot)
    changed_by       INTEGER
);
CREATE INDEX lead_status_changes_lead ON lead_status_changes (lead_id, changed_at);
CREATE INDEX lead_status_changes_to ON lead_status_changes (to_pipeline_id, to_status_id, changed_at);

-- created_at up to which stage changes were followed; NULL until the first
-- walk, which reads the whole history the API returns.
ALTER TABLE sync_state ADD COLUMN stage_history_cursor INTEGER;

-- The usual filters and joins on leads ((pipeline_id, status_id) and
-- responsible_user_id exist since 0001).
CREATE INDEX leads_status_id ON leads (status_id, closed_at);
CREATE INDEX leads_created_at ON leads (created_at);
CREATE INDEX leads_closed_at ON leads (closed_at);

-- Alive leads with the names of their pipeline, stage, responsible user and
-- loss reason, won/lost/open, and their times as ISO-8601 text (UTC).
CREATE VIEW leads_named AS
SELECT
    l.id,
    l.name,
    l.price,
    l.pipeline_id,
    p.name AS pipeline_name,
    l.status_id,
    s.name AS status_name,
    s.sort AS status_sort,
    CASE l.status_id WHEN 142 THEN 'won' WHEN 143 THEN 'lost' ELSE 'open' END AS outcome,
    l.responsible_user_id,
    u.name AS responsible_user_name,
    l.loss_reason_id,
    lr.name AS loss_reason_name,
    l.created_at,
    l.updated_at,
    l.closed_at,
    strftime('%Y-%m-%dT%H:%M:%SZ', l.created_at, 'unixepoch') AS created,
    strftime('%Y-%m-%dT%H:%M:%SZ', l.updated_at, 'unixepoch') AS updated,
    strftime('%Y-%m-%dT%H:%M:%SZ', l.closed_at, 'unixepoch') AS closed
FROM leads AS l
LEFT JOIN pipelines AS p ON p.id = l.pipeline_id
LEFT JOIN statuses AS s ON s.pipeline_id = l.pipeline_id AND s.id = l.status_id
LEFT JOIN users AS u ON u.id = l.responsible_user_id
LEFT JOIN loss_reasons AS lr ON lr.id = l.loss_reason_id
WHERE l.is_deleted = 0;

-- One row per value of a custom field of a lead (a multiselect gives several
-- rows), typed, with the field's name from its definition. Covers deleted
-- leads too: join alive_leads to leave them out. Replaces the JSON view of
-- 0002 with the same leading columns.
DROP VIEW IF EXISTS lead_custom_field_values;
CREATE VIEW lead_custom_field_values AS
SELECT
    v.lead_id,
    v.field_id,
    f.name AS field_name,
    f.code AS field_code,
    COALESCE(f.type, v.field_type) AS field_type,
    COALESCE(v.value_text, v.value_number, v.value_bool, v.value_date) AS value,
    v.enum_id,
    v.enum_code,
    v.position,
    v.value_text,
    v.value_number,
    v.value_bool,
    v.value_date,
    strftime('%Y-%m-%dT%H:%M:%SZ', v.value_date, 'unixepoch') AS value_date_iso
FROM lead_field_values AS v
LEFT JOIN custom_fields AS f ON f.id = v.field_id;

-- Each alive lead's stays in each stage, from its stage history: a stay
-- begins at a change's changed_at and ends at the lead's next change (ties
-- in one second ordered by event id), or is still going (left_at NULL).
-- The stage before a lead's first recorded change counts from the lead's
-- created_at; a lead with no recorded change has been in its current stage
-- since created_at. seconds is NULL while the stay goes on.
CREATE VIEW lead_stage_durations AS
WITH ordered AS (
    SELECT
        c.*,
        ROW_NUMBER() OVER w AS n,
        LEAD(c.changed_at) OVER w AS next_changed_at
    FROM lead_status_changes AS c
    JOIN leads AS l ON l.id = c.lead_id AND l.is_deleted = 0
    WINDOW w AS (PARTITION BY c.lead_id ORDER BY c.changed_at, c.event_id)
),
stays AS (
    SELECT lead_id, to_pipeline_id AS pipeline_id, to_status_id AS status_id,
           changed_at AS entered_at, next_changed_at AS left_at
    FROM ordered
    UNION ALL
    SELECT o.lead_id, o.from_pipeline_id, o.from_status_id, l.created_at, o.changed_at
    FROM ordered AS o
    JOIN leads AS l ON l.id = o.lead_id
    WHERE o.n = 1 AND l.created_at IS NOT NULL AND l.created_at <= o.changed_at
    UNION ALL
    SELECT l.id, l.pipeline_id, l.status_id, l.created_at, NULL
    FROM leads AS l
    WHERE l.is_deleted = 0
      AND NOT EXISTS (SELECT 1 FROM lead_status_changes AS c WHERE c.lead_id = l.id)
)
SELECT
    st.lead_id,
    st.pipeline_id,
    p.name AS pipeline_name,
    st.status_id,
    s.name AS status_name,
    st.entered_at,
    st.left_at,
    st.left_at - st.entered_at AS seconds,
    strftime('%Y-%m-%dT%H:%M:%SZ', st.entered_at, 'unixepoch') AS entered,
    strftime('%Y-%m-%dT%H:%M:%SZ', st.left_at, 'unixepoch') AS left
FROM stays AS st
LEFT JOIN pipelines AS p ON p.id = st.pipeline_id
LEFT JOIN statuses AS s ON s.pipeline_id = st.pipeline_id AND s.id = st.status_id;
