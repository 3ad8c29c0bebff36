-- Views that make the JSON columns easy to query (see README "Schema").

-- The leads that exist in Kommo now.
CREATE VIEW alive_leads AS
SELECT * FROM leads WHERE is_deleted = 0;

-- One row per value of a custom field of a lead (a multiselect gives several rows).
CREATE VIEW lead_custom_field_values AS
SELECT
    l.id                               AS lead_id,
    json_extract(f.value, '$.field_id')   AS field_id,
    json_extract(f.value, '$.field_name') AS field_name,
    json_extract(f.value, '$.field_code') AS field_code,
    json_extract(f.value, '$.field_type') AS field_type,
    json_extract(v.value, '$.value')      AS value,
    json_extract(v.value, '$.enum_id')    AS enum_id,
    json_extract(v.value, '$.enum_code')  AS enum_code
FROM leads AS l,
     json_each(l.custom_fields_values) AS f,
     json_each(f.value, '$.values') AS v
WHERE l.custom_fields_values IS NOT NULL AND json_valid(l.custom_fields_values);

-- One row per tag of a lead.
CREATE VIEW lead_tags AS
SELECT
    l.id                             AS lead_id,
    json_extract(t.value, '$.id')    AS tag_id,
    json_extract(t.value, '$.name')  AS tag_name,
    json_extract(t.value, '$.color') AS tag_color
FROM leads AS l,
     json_each(l.raw, '$._embedded.tags') AS t
WHERE json_valid(l.raw);

