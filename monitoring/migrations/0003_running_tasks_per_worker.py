"""celery_worker_tasks_active from a trigger-kept count, not from counting the STARTED records.

Why: a scrape counted the STARTED records per worker, 37-75 ms on the million-record bench table
(20,000 of its records are STARTED), most of one scrape's 100 ms. The count per worker is now
kept in monitoring_metriccounter (metric "claw_running_tasks", label = the worker) by triggers
on the task records: +1 for a record that becomes STARTED with a worker, -1 when it leaves
STARTED, changes worker or is deleted. Unlike the other series of that table it goes down: it
mirrors the STARTED records, as tasks_app's TaskCount mirrors the states.
"""

from django.db import migrations

RUNNING = "(state = 'STARTED' AND worker <> '')"

UPSERT = """
INSERT INTO monitoring_metriccounter (metric, name, queue, model, label, kind, slot, value)
SELECT 'claw_running_tasks', '', '', '', worker, '', floor(random() * 8)::int, sum(v)
FROM deltas GROUP BY worker ORDER BY worker
ON CONFLICT (metric, name, queue, model, label, kind, slot)
DO UPDATE SET value = monitoring_metriccounter.value + EXCLUDED.value;
"""

FORWARD = f"""
CREATE OR REPLACE FUNCTION monitoring_running_on_insert() RETURNS trigger AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM new_rows WHERE {RUNNING}) THEN
        WITH deltas AS (SELECT worker::text AS worker, 1 AS v FROM new_rows WHERE {RUNNING}) {UPSERT}
    END IF;
    RETURN NULL;
END $$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION monitoring_running_on_update() RETURNS trigger AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM new_rows WHERE {RUNNING}) AND NOT EXISTS (SELECT 1 FROM old_rows WHERE {RUNNING}) THEN
        RETURN NULL;
    END IF;
    WITH changed AS (
        SELECT o.state AS old_state, o.worker AS old_worker, n.state AS new_state, n.worker AS new_worker
        FROM old_rows o JOIN new_rows n ON n.id = o.id
        WHERE ROW(o.state, o.worker) IS DISTINCT FROM ROW(n.state, n.worker)
    ), deltas AS (
        SELECT old_worker::text AS worker, -1 AS v FROM changed WHERE old_state = 'STARTED' AND old_worker <> ''
        UNION ALL
        SELECT new_worker::text, 1 FROM changed WHERE new_state = 'STARTED' AND new_worker <> ''
    ) {UPSERT}
    RETURN NULL;
END $$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION monitoring_running_on_delete() RETURNS trigger AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM old_rows WHERE {RUNNING}) THEN
        WITH deltas AS (SELECT worker::text AS worker, -1 AS v FROM old_rows WHERE {RUNNING}) {UPSERT}
    END IF;
    RETURN NULL;
END $$ LANGUAGE plpgsql;

CREATE TRIGGER monitoring_running_insert AFTER INSERT ON tasks_app_taskrecord
REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION monitoring_running_on_insert();
CREATE TRIGGER monitoring_running_update AFTER UPDATE ON tasks_app_taskrecord
REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION monitoring_running_on_update();
CREATE TRIGGER monitoring_running_delete AFTER DELETE ON tasks_app_taskrecord
REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION monitoring_running_on_delete();

-- The records running now.
WITH deltas AS (SELECT worker::text AS worker, 1 AS v FROM tasks_app_taskrecord WHERE {RUNNING}) {UPSERT}
"""

BACKWARD = """
DROP TRIGGER IF EXISTS monitoring_running_insert ON tasks_app_taskrecord;
DROP TRIGGER IF EXISTS monitoring_running_update ON tasks_app_taskrecord;
DROP TRIGGER IF EXISTS monitoring_running_delete ON tasks_app_taskrecord;
DROP FUNCTION IF EXISTS monitoring_running_on_insert();
DROP FUNCTION IF EXISTS monitoring_running_on_update();
DROP FUNCTION IF EXISTS monitoring_running_on_delete();
DELETE FROM monitoring_metriccounter WHERE metric = 'claw_running_tasks';
"""


class Migration(migrations.Migration):
    dependencies = [
        ("monitoring", "0002_metricrollup"),
    ]

    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
