-- Each lead's custom field values (typed), tags, contacts and companies, in
-- tables of their own, rewritten with their lead in the page's transaction
-- (see README "Schema"). They replace the JSON views of 0002: `lead_tags`
-- becomes a table, and `lead_custom_field_values` a view over
-- `lead_field_values` with the field names (migration 0007).
DROP VIEW IF EXISTS lead_custom_field_values;
DROP VIEW IF EXISTS lead_tags;

-- One row per value of a custom field of a lead (a multiselect gives several),
-- the value in the column that fits the field's type.
CREATE TABLE lead_field_values (
    lead_id      INTEGER NOT NULL,
    field_id     INTEGER NOT NULL,
    -- the value's place among the field's values, from 0
    position     INTEGER NOT NULL,
    field_type   TEXT,
    -- text-like values, and the option's text of select fields
    value_text   TEXT,
    -- numbers (Kommo sends most as text)
    value_number REAL,
    -- checkboxes: 0 or 1
    value_bool   INTEGER,
    -- dates: Unix seconds (Kommo sends a number or "YYYY-MM-DD")
    value_date   INTEGER,
    enum_id      INTEGER,
    enum_code    TEXT,
    PRIMARY KEY (lead_id, field_id, position)
) WITHOUT ROWID;
CREATE INDEX lead_field_values_field ON lead_field_values (field_id, enum_id);

CREATE TABLE lead_tags (
    lead_id INTEGER NOT NULL,
    tag_id  INTEGER NOT NULL,
    PRIMARY KEY (lead_id, tag_id)
) WITHOUT ROWID;
CREATE INDEX lead_tags_tag ON lead_tags (tag_id);

CREATE TABLE lead_contacts (
    lead_id    INTEGER NOT NULL,
    contact_id INTEGER NOT NULL,
    is_main    INTEGER NOT NULL CHECK (is_main IN (0, 1)),
    PRIMARY KEY (lead_id, contact_id)
) WITHOUT ROWID;
CREATE INDEX lead_contacts_contact ON lead_contacts (contact_id);

CREATE TABLE lead_companies (
    lead_id    INTEGER NOT NULL,
    company_id INTEGER NOT NULL,
    PRIMARY KEY (lead_id, company_id)
) WITHOUT ROWID;
CREATE INDEX lead_companies_company ON lead_companies (company_id);

-- Tags and companies of leads mirrored before this migration, from `raw`
-- (field values and contacts fill in as each lead is synced again; a
-- `--backfill` fills them at once).
-- (json_extract only on elements that are objects: a string element's value
-- is plain text, not JSON.)
INSERT OR IGNORE INTO lead_tags (lead_id, tag_id)
SELECT lead_id, tag_id FROM (
    SELECT l.id AS lead_id,
           CASE WHEN t.type = 'object' THEN json_extract(t.value, '$.id') END AS tag_id
    FROM leads AS l, json_each(CASE WHEN json_valid(l.raw) THEN l.raw END, '$._embedded.tags') AS t
    WHERE l.is_deleted = 0
)
WHERE typeof(tag_id) = 'integer';
INSERT OR IGNORE INTO lead_companies (lead_id, company_id)
SELECT lead_id, company_id FROM (
    SELECT l.id AS lead_id,
           CASE WHEN c.type = 'object' THEN json_extract(c.value, '$.id') END AS company_id
    FROM leads AS l, json_each(CASE WHEN json_valid(l.raw) THEN l.raw END, '$._embedded.companies') AS c
    WHERE l.is_deleted = 0
)
WHERE typeof(company_id) = 'integer';
