-- Custom field definitions of contacts and companies beside the leads'
-- (src/kommo/entity.rs): each row says whose field it is (`leads`,
-- `contacts`, `companies`). Kommo's field ids are unique in the account, so
-- the key stays `id`; a listing flags as deleted only its own entity's
-- fields.
ALTER TABLE custom_fields ADD COLUMN entity_type TEXT NOT NULL DEFAULT 'leads';
