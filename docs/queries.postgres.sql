-- Questions the mirror answers in SQL, for a PostgreSQL mirror: the twin of
-- docs/queries.sql, with the same queries, columns, rows and order. Run one
-- with
--   PGOPTIONS='-c search_path=ACCOUNT_SCHEMA' psql -d DATABASE -f one-query.sql
-- or paste it into psql. Times are UTC
-- (to_char(to_timestamp(x) AT TIME ZONE 'UTC', ...), whatever the session's
-- TimeZone); for the account's own time zone (table account, column
-- timezone) use it instead of 'UTC', e.g.
-- to_char(to_timestamp(closed_at) AT TIME ZONE 'America/Sao_Paulo', 'YYYY-MM').
--
-- Each query starts with a header line "-- query: NAME" and a comment saying
-- what it answers; tests/queries.rs runs every one of them against a mirror
-- of the simulated account and compares the result with the same answer
-- computed from the account itself. Every ORDER BY is total, so results
-- compare exactly.
--
-- How these differ from the SQLite ones, and why:
-- - Every result column is bigint, double precision or text (what sqlx's Any
--   driver reads): SUM of bigint is numeric here, so it is cast to bigint;
--   ROUND(x, 2) needs numeric, so the rounded value is cast back to double
--   precision.
-- - SQLite's SUM(condition) counts true conditions; here
--   SUM(CAST(condition AS integer)), which is bigint and, like SQLite's,
--   NULL when the condition is NULL on every row of the group.
-- - PostgreSQL wants every selected column grouped (or functionally
--   dependent on a grouped key), so names looked up by a grouped id are
--   grouped too; they are one per id, so the groups are the same.
-- - PostgreSQL sorts NULL last in ascending order and first in descending
--   order, SQLite the other way round: NULLS FIRST / NULLS LAST on columns
--   that may be NULL keep SQLite's order.
-- - The clock: SQLite's strftime('%s', 'now') is
--   floor(extract(epoch FROM now())) (whole seconds, not rounded), midnight
--   UTC today (date('now')) is date_trunc('day', now() AT TIME ZONE 'UTC').
-- - Times outside years 1 to 9999 give NULL, as SQLite's strftime does
--   (to_timestamp alone would fail on them).

-- query: won_revenue_by_month_and_pipeline
-- Won revenue by month and pipeline: how many leads were won in each
-- calendar month (by closed_at) in each pipeline, and what they were worth.
SELECT CASE WHEN closed_at BETWEEN -62135596800 AND 253402300799
            THEN to_char(to_timestamp(closed_at) AT TIME ZONE 'UTC', 'YYYY-MM') END AS month,
       pipeline_name AS pipeline,
       COUNT(*) AS won_leads,
       CAST(COALESCE(SUM(price), 0) AS bigint) AS revenue
FROM leads_named
WHERE outcome = 'won' AND closed_at IS NOT NULL
GROUP BY month, pipeline_id, pipeline_name
ORDER BY month DESC NULLS LAST, pipeline_id NULLS FIRST;

-- query: funnel_by_stage
-- Funnel by stage: how many leads (and how much value) sit in each stage of
-- each pipeline now, stages in the pipeline's order, empty stages included.
SELECT p.name AS pipeline,
       s.name AS stage,
       COUNT(l.id) AS leads,
       CAST(COALESCE(SUM(l.price), 0) AS bigint) AS value
FROM statuses AS s
JOIN pipelines AS p ON p.id = s.pipeline_id
LEFT JOIN alive_leads AS l ON l.pipeline_id = s.pipeline_id AND l.status_id = s.id
WHERE s.is_deleted = 0 AND p.is_deleted = 0
GROUP BY s.pipeline_id, s.id, p.id
ORDER BY p.sort NULLS FIRST, p.id, s.sort NULLS FIRST, s.id;

-- query: conversion_rate_per_pipeline
-- Conversion rate per pipeline: won, lost and still open leads, and the
-- share of closed leads that were won (in %).
SELECT pipeline_name AS pipeline,
       SUM(CAST(outcome = 'won' AS integer)) AS won,
       SUM(CAST(outcome = 'lost' AS integer)) AS lost,
       SUM(CAST(outcome = 'open' AS integer)) AS open,
       CAST(ROUND(100.0 * SUM(CAST(outcome = 'won' AS integer))
                  / NULLIF(SUM(CAST(outcome != 'open' AS integer)), 0), 2)
            AS double precision) AS win_rate_pct
FROM leads_named
GROUP BY pipeline_id, pipeline_name
ORDER BY pipeline_id NULLS FIRST;

-- query: median_days_to_close
-- Median days to close: for the won leads of each pipeline, the median time
-- from creation to closing, in days (the mean of the two middle ones for
-- an even count).
WITH won AS (
    SELECT pipeline_id, pipeline_name,
           (closed_at - created_at) / 86400.0 AS days,
           ROW_NUMBER() OVER (PARTITION BY pipeline_id ORDER BY closed_at - created_at) AS n,
           COUNT(*) OVER (PARTITION BY pipeline_id) AS total
    FROM leads_named
    WHERE outcome = 'won' AND closed_at IS NOT NULL AND created_at IS NOT NULL
)
SELECT pipeline_name AS pipeline,
       MAX(total) AS won_leads,
       CAST(ROUND(AVG(days), 2) AS double precision) AS median_days_to_close
FROM won
WHERE n IN ((total + 1) / 2, (total + 2) / 2)
GROUP BY pipeline_id, pipeline_name
ORDER BY pipeline_id NULLS FIRST;

-- query: open_leads_per_manager
-- Open leads per manager: who owns how many open leads, and their value.
SELECT CASE WHEN responsible_user_id IS NULL THEN '(nobody)'
            ELSE COALESCE(responsible_user_name, 'user ' || responsible_user_id) END AS manager,
       COUNT(*) AS open_leads,
       CAST(COALESCE(SUM(price), 0) AS bigint) AS open_value
FROM leads_named
WHERE outcome = 'open'
GROUP BY responsible_user_id, responsible_user_name
ORDER BY open_leads DESC, responsible_user_id NULLS FIRST;

-- query: stale_open_leads
-- Stale open leads: the 25 open leads untouched the longest, among those
-- not updated for 30 days or more, with their stage, manager and days idle.
SELECT id,
       name,
       pipeline_name AS pipeline,
       status_name AS stage,
       responsible_user_name AS manager,
       (CAST(floor(extract(epoch FROM now())) AS bigint) - updated_at) / 86400 AS days_idle
FROM leads_named
WHERE outcome = 'open'
  AND updated_at <= CAST(floor(extract(epoch FROM now())) AS bigint) - 30 * 86400
ORDER BY updated_at, id
LIMIT 25;

-- query: average_days_in_stage
-- Average days in each stage: over every finished stay of an alive lead in
-- a stage (from the stage history), how many stays and how long on average.
SELECT d.pipeline_name AS pipeline,
       d.status_name AS stage,
       COUNT(*) AS stays,
       CAST(ROUND(AVG(d.seconds) / 86400.0, 2) AS double precision) AS avg_days
FROM lead_stage_durations AS d
LEFT JOIN statuses AS s ON s.pipeline_id = d.pipeline_id AND s.id = d.status_id
WHERE d.left_at IS NOT NULL
GROUP BY d.pipeline_id, d.status_id, d.pipeline_name, d.status_name, s.sort
ORDER BY d.pipeline_id NULLS FIRST, s.sort NULLS FIRST, d.status_id NULLS FIRST;

-- query: leads_by_lead_source
-- Breakdown by a select field: alive leads and their value per option of the
-- field whose code is LEAD_SOURCE.
SELECT v.value_text AS lead_source,
       COUNT(*) AS leads,
       CAST(COALESCE(SUM(l.price), 0) AS bigint) AS value
FROM lead_custom_field_values AS v
JOIN alive_leads AS l ON l.id = v.lead_id
WHERE v.field_code = 'LEAD_SOURCE'
GROUP BY v.value_text
ORDER BY leads DESC, lead_source NULLS FIRST;

-- query: leads_deleted_last_30_days
-- Leads deleted in the last 30 days (by when the mirror learned of it), with
-- what they were when last seen alive.
SELECT l.id,
       l.name,
       p.name AS pipeline,
       l.price
FROM leads AS l
LEFT JOIN pipelines AS p ON p.id = l.pipeline_id
WHERE l.is_deleted = 1
  AND l.deleted_at >= CAST(floor(extract(epoch FROM now())) AS bigint) - 30 * 86400
ORDER BY l.id;

-- query: tag_counts
-- Tag counts: how many alive leads carry each tag of the account.
SELECT t.name AS tag,
       COUNT(l.id) AS leads
FROM tags AS t
LEFT JOIN lead_tags AS lt ON lt.tag_id = t.id
LEFT JOIN alive_leads AS l ON l.id = lt.lead_id
WHERE t.is_deleted = 0
GROUP BY t.id
ORDER BY leads DESC, t.id;

-- query: leads_changed_today
-- Leads changed today (UTC), per pipeline: how many alive leads were
-- updated, created, won and lost since midnight.
WITH today AS (
    SELECT CAST(extract(epoch FROM date_trunc('day', now() AT TIME ZONE 'UTC')) AS bigint) AS midnight
)
SELECT pipeline_name AS pipeline,
       COUNT(*) AS changed,
       SUM(CAST(created_at >= midnight AS integer)) AS created,
       SUM(CAST(outcome = 'won' AND closed_at >= midnight AS integer)) AS won,
       SUM(CAST(outcome = 'lost' AND closed_at >= midnight AS integer)) AS lost
FROM leads_named, today
WHERE updated_at >= midnight
GROUP BY pipeline_id, pipeline_name
ORDER BY pipeline_id NULLS FIRST;

-- query: loss_reasons_of_lost_leads
-- Loss reasons of lost leads: why leads were lost, how often, and the value
-- lost.
SELECT COALESCE(loss_reason_name, '(no reason given)') AS loss_reason,
       COUNT(*) AS lost_leads,
       CAST(COALESCE(SUM(price), 0) AS bigint) AS lost_value
FROM leads_named
WHERE outcome = 'lost'
GROUP BY loss_reason_id, loss_reason_name
ORDER BY lost_leads DESC, loss_reason_id NULLS FIRST;

-- query: stage_entries_per_week
-- Stage entries per week: how many times leads entered each stage in each
-- of the last 8 ISO weeks (Monday-based), from the stage history.
-- date_trunc('week', ...) is the Monday starting the ISO week, as SQLite's
-- 'weekday 0', '-6 days'; the oldest week starts 7 weeks before this
-- week's Monday (SQLite's date('now', 'weekday 0', '-55 days')).
SELECT CASE WHEN c.changed_at BETWEEN -62135596800 AND 253402300799
            THEN to_char(date_trunc('week', to_timestamp(c.changed_at) AT TIME ZONE 'UTC'), 'YYYY-MM-DD')
       END AS week_starting,
       p.name AS pipeline,
       s.name AS stage,
       COUNT(*) AS entries
FROM lead_status_changes AS c
LEFT JOIN pipelines AS p ON p.id = c.to_pipeline_id
LEFT JOIN statuses AS s ON s.pipeline_id = c.to_pipeline_id AND s.id = c.to_status_id
WHERE c.changed_at >= CAST(extract(epoch FROM date_trunc('week', now() AT TIME ZONE 'UTC')
                                              - interval '49 days') AS bigint)
GROUP BY week_starting, c.to_pipeline_id, c.to_status_id, p.name, s.name, s.sort
ORDER BY week_starting DESC NULLS LAST, c.to_pipeline_id NULLS FIRST,
         s.sort NULLS FIRST, c.to_status_id NULLS FIRST;

-- query: won_revenue_by_company
-- Won revenue by company: for each company, how many of its leads were won
-- and what they were worth (a lead's company from _embedded.companies, via
-- the view leads_with_people; leads without an alive company left out).
SELECT company_name AS company,
       COUNT(*) AS won_leads,
       CAST(COALESCE(SUM(price), 0) AS bigint) AS revenue
FROM leads_with_people
WHERE outcome = 'won' AND company_id IS NOT NULL
GROUP BY company_id, company_name
ORDER BY revenue DESC, company_id;

-- query: open_leads_whose_main_contact_has_no_phone
-- Open leads whose main contact has no phone: who cannot be called back.
SELECT id, name, main_contact_name
FROM leads_with_people
WHERE outcome = 'open' AND main_contact_id IS NOT NULL AND main_contact_phone IS NULL
ORDER BY id;

-- query: contacts_with_several_open_leads
-- Contacts with more than one open lead (as main contact or not).
SELECT c.id, c.name, COUNT(*) AS open_leads
FROM contacts AS c
JOIN lead_contacts AS lc ON lc.contact_id = c.id
JOIN alive_leads AS l ON l.id = lc.lead_id
WHERE c.is_deleted = 0 AND COALESCE(l.status_id, 0) NOT IN (142, 143)
GROUP BY c.id
HAVING COUNT(*) > 1
ORDER BY open_leads DESC, c.id;

-- query: duplicate_phones
-- Duplicate phones: phone numbers that more than one alive contact carries
-- (as written in Kommo), how many contacts and the first of them.
SELECT phone,
       COUNT(DISTINCT contact_id) AS contacts,
       MIN(contact_id) AS first_contact_id
FROM contact_phones
GROUP BY phone
HAVING COUNT(DISTINCT contact_id) > 1
ORDER BY contacts DESC, phone;
