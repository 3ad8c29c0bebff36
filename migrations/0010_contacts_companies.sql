-- Contacts and companies, mirrored as leads are (see README "Schema"): one
-- row per record ever seen, typed columns NULL where the type does not fit,
-- `raw` as received, `is_deleted`/`deleted_at`, never removed. Their field
-- values, tags and links in tables of their own, named after the entity
-- (src/kommo/entity.rs), rewritten with their record in the page's
-- transaction.

CREATE TABLE contacts (
    id                   INTEGER PRIMARY KEY,
    name                 TEXT,
    first_name           TEXT,
    last_name            TEXT,
    responsible_user_id  INTEGER,
    group_id             INTEGER,
    created_by           INTEGER,
    updated_by           INTEGER,
    account_id           INTEGER,
    created_at           INTEGER,
    updated_at           INTEGER,
    closest_task_at      INTEGER,
    is_deleted           INTEGER NOT NULL DEFAULT 0 CHECK (is_deleted IN (0, 1)),
    deleted_at           INTEGER,
    custom_fields_values TEXT,
    raw                  TEXT NOT NULL,
    synced_at            INTEGER NOT NULL
);
CREATE INDEX contacts_deleted_updated ON contacts (is_deleted, updated_at);

CREATE TABLE companies (
    id                   INTEGER PRIMARY KEY,
    name                 TEXT,
    responsible_user_id  INTEGER,
    group_id             INTEGER,
    created_by           INTEGER,
    updated_by           INTEGER,
    account_id           INTEGER,
    created_at           INTEGER,
    updated_at           INTEGER,
    closest_task_at      INTEGER,
    is_deleted           INTEGER NOT NULL DEFAULT 0 CHECK (is_deleted IN (0, 1)),
    deleted_at           INTEGER,
    custom_fields_values TEXT,
    raw                  TEXT NOT NULL,
    synced_at            INTEGER NOT NULL
);
CREATE INDEX companies_deleted_updated ON companies (is_deleted, updated_at);

-- The field's `field_code` (PHONE, EMAIL, WEB, ADDRESS... or NULL), as each
-- value carries it: the phone and email views need no field definitions.
-- Leads' values gain it too (filled as each lead is synced again).
ALTER TABLE lead_field_values ADD COLUMN field_code TEXT;

CREATE TABLE contact_field_values (
    contact_id   INTEGER NOT NULL,
    field_id     INTEGER NOT NULL,
    position     INTEGER NOT NULL,
    field_type   TEXT,
    value_text   TEXT,
    value_number REAL,
    value_bool   INTEGER,
    value_date   INTEGER,
    enum_id      INTEGER,
    enum_code    TEXT,
    field_code   TEXT,
    PRIMARY KEY (contact_id, field_id, position)
) WITHOUT ROWID;
-- Phones and emails by value (duplicates across contacts, lookups).
CREATE INDEX contact_field_values_code ON contact_field_values (field_code, value_text);

CREATE TABLE company_field_values (
    company_id   INTEGER NOT NULL,
    field_id     INTEGER NOT NULL,
    position     INTEGER NOT NULL,
    field_type   TEXT,
    value_text   TEXT,
    value_number REAL,
    value_bool   INTEGER,
    value_date   INTEGER,
    enum_id      INTEGER,
    enum_code    TEXT,
    field_code   TEXT,
    PRIMARY KEY (company_id, field_id, position)
) WITHOUT ROWID;
CREATE INDEX company_field_values_code ON company_field_values (field_code, value_text);

CREATE TABLE contact_tags (
    contact_id INTEGER NOT NULL,
    tag_id     INTEGER NOT NULL,
    PRIMARY KEY (contact_id, tag_id)
) WITHOUT ROWID;

CREATE TABLE company_tags (
    company_id INTEGER NOT NULL,
    tag_id     INTEGER NOT NULL,
    PRIMARY KEY (company_id, tag_id)
) WITHOUT ROWID;

-- A contact's company (`_embedded.companies`, at most one).
CREATE TABLE contact_companies (
    contact_id INTEGER NOT NULL,
    company_id INTEGER NOT NULL,
    PRIMARY KEY (contact_id, company_id)
) WITHOUT ROWID;
CREATE INDEX contact_companies_company ON contact_companies (company_id);

-- The last full pass in which each contact / company was seen alive (as
-- lead_full_pass_seen for leads).
CREATE TABLE contact_full_pass_seen (
    contact_id INTEGER PRIMARY KEY,
    full_pass  INTEGER NOT NULL
);
CREATE TABLE company_full_pass_seen (
    company_id INTEGER PRIMARY KEY,
    full_pass  INTEGER NOT NULL
);

-- Each alive contact's phones, one row per value, with its type (WORK,
-- MOB, ...) and its place among the contact's phones (0 first).
CREATE VIEW contact_phones AS
SELECT
    c.id AS contact_id,
    c.name AS contact_name,
    v.value_text AS phone,
    v.enum_code AS phone_type,
    ROW_NUMBER() OVER (PARTITION BY c.id ORDER BY v.field_id, v.position) - 1 AS position
FROM contacts AS c
JOIN contact_field_values AS v ON v.contact_id = c.id
WHERE c.is_deleted = 0 AND v.field_code = 'PHONE' AND v.value_text IS NOT NULL;

-- Each alive contact's emails, likewise.
CREATE VIEW contact_emails AS
SELECT
    c.id AS contact_id,
    c.name AS contact_name,
    v.value_text AS email,
    v.enum_code AS email_type,
    ROW_NUMBER() OVER (PARTITION BY c.id ORDER BY v.field_id, v.position) - 1 AS position
FROM contacts AS c
JOIN contact_field_values AS v ON v.contact_id = c.id
WHERE c.is_deleted = 0 AND v.field_code = 'EMAIL' AND v.value_text IS NOT NULL;

-- Each alive lead with the people behind it: its main contact's name, first
-- phone and first email, and its company's name (NULL where the lead has
-- none, or the contact or company is deleted).
CREATE VIEW leads_with_people AS
SELECT
    l.id,
    l.name,
    l.price,
    l.pipeline_id,
    l.status_id,
    CASE l.status_id WHEN 142 THEN 'won' WHEN 143 THEN 'lost' ELSE 'open' END AS outcome,
    l.responsible_user_id,
    l.created_at,
    l.closed_at,
    c.id AS main_contact_id,
    c.name AS main_contact_name,
    (SELECT v.value_text FROM contact_field_values AS v
     WHERE v.contact_id = c.id AND v.field_code = 'PHONE' AND v.value_text IS NOT NULL
     ORDER BY v.field_id, v.position LIMIT 1) AS main_contact_phone,
    (SELECT v.value_text FROM contact_field_values AS v
     WHERE v.contact_id = c.id AND v.field_code = 'EMAIL' AND v.value_text IS NOT NULL
     ORDER BY v.field_id, v.position LIMIT 1) AS main_contact_email,
    co.id AS company_id,
    co.name AS company_name
FROM leads AS l
LEFT JOIN contacts AS c ON c.is_deleted = 0 AND c.id = (
    SELECT lc.contact_id FROM lead_contacts AS lc
    WHERE lc.lead_id = l.id AND lc.is_main = 1 ORDER BY lc.contact_id LIMIT 1)
LEFT JOIN companies AS co ON co.is_deleted = 0 AND co.id = (
    SELECT lco.company_id FROM lead_companies AS lco
    WHERE lco.lead_id = l.id ORDER BY lco.company_id LIMIT 1)
WHERE l.is_deleted = 0;
