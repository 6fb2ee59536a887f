"""The counting triggers append their deltas to MetricIncrement instead of upserting the counters.

Why (issue 19): migrations 0001 and 0003 upserted the counter rows (8 slots a series) in the
transaction of every task record write and reply; with a hundred replies in flight, writers
queued on those rows' locks: a drain of 1,000 replies with the rollup triggers gone (migration
0004) still spent 5.3 ms on a STARTED write, 4.2 ms on a SUCCESS write and 3.8 ms on a reply's
insert, against 1.0, 0.8 and 0.1 ms with no monitoring trigger at all. An INSERT of new rows
waits on nobody. The counted events stay the same, counted in the writing transaction, so the
counts still agree with the records whoever wrote them; only where a delta goes changes. A fold
moves the deltas into the counters (monitoring.counters.fold_increments, a periodic job), and a
scrape adds the deltas not folded yet, in one snapshot.

The functions keep their names and events; the running-task counts of migration 0003 are
counted by 0001's insert and update functions (one pass over a statement's rows, not two), and
a user's message returns at once. One session writing reply-shaped sequences (publish, start,
two messages, finish), PostgreSQL CPU per reply: 3.0 ms with migrations 0001-0003, 2.2 ms with
0004-0005, 1.65 ms with no monitoring trigger. Backwards: the deltas are folded, the old texts
and triggers restored.
"""

import importlib

from django.db import migrations, models

COUNTERS = importlib.import_module("monitoring.migrations.0001_initial")
RUNNING = importlib.import_module("monitoring.migrations.0003_running_tasks_per_worker")

APPEND = """
INSERT INTO monitoring_metricincrement (metric, name, queue, model, label, kind, value)
SELECT metric, name, queue, model, label, kind, sum(v) FROM deltas GROUP BY metric, name, queue, model, label, kind;
"""

# One function per event, counting what migrations 0001 and 0003 counted (their running-task
# insert and update triggers are folded into 0001's: one pass over the transition tables).
FORWARD = f"""
CREATE OR REPLACE FUNCTION monitoring_on_taskrecord_insert() RETURNS trigger AS $$
BEGIN
    WITH deltas AS (
        SELECT 'celery_task_sent_total'::text AS metric, task_name::text AS name, queue::text AS queue,
               ''::text AS model, ''::text AS label, ''::text AS kind, 1::numeric AS v
        FROM new_rows
        UNION ALL
        SELECT 'claw_running_tasks', '', '', '', worker, '', 1 FROM new_rows WHERE state = 'STARTED' AND worker <> ''
    ) {APPEND}
    RETURN NULL;
END $$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION monitoring_on_taskrecord_update() RETURNS trigger AS $$
BEGIN
    WITH changed AS (
        SELECT n.task_name::text AS name, n.queue::text AS queue, o.state AS old_state, n.state AS new_state,
               o.worker::text AS old_worker, n.worker::text AS new_worker,
               o.state IS DISTINCT FROM n.state AS state_changed,
               -- every run writes STARTED with its start time: a retry that started before the first
               -- run's RETRY was written, or a redelivery after a crash, starts again STARTED -> STARTED.
               o.state IS DISTINCT FROM n.state OR (n.state = 'STARTED' AND o.started_at IS DISTINCT FROM n.started_at)
                   AS counted,
               ROW(o.state, o.worker) IS DISTINCT FROM ROW(n.state, n.worker) AS running_moved,
               CASE WHEN n.state IN ('SUCCESS', 'FAILURE') AND o.state IS DISTINCT FROM n.state AND n.started_at IS NOT NULL AND n.done_at IS NOT NULL
                    THEN greatest(0, extract(epoch FROM n.done_at - n.started_at)) END AS runtime,
               CASE WHEN o.state = 'PENDING' AND n.state = 'STARTED' AND n.started_at IS NOT NULL
                    THEN greatest(0, extract(epoch FROM n.started_at - greatest(n.created_at, coalesce(n.eta, n.created_at))))
               END AS wait
        FROM old_rows o JOIN new_rows n ON n.id = o.id
        WHERE ROW(o.state, o.worker) IS DISTINCT FROM ROW(n.state, n.worker)
           OR (n.state = 'STARTED' AND o.started_at IS DISTINCT FROM n.started_at)
    ), deltas AS (
        SELECT CASE new_state WHEN 'STARTED' THEN 'celery_task_started_total'
                              WHEN 'SUCCESS' THEN 'celery_task_succeeded_total'
                              WHEN 'FAILURE' THEN 'celery_task_failed_total'
                              WHEN 'RETRY' THEN 'celery_task_retried_total'
                              WHEN 'REVOKED' THEN 'celery_task_revoked_total' END AS metric,
               name, queue, ''::text AS model, ''::text AS label, ''::text AS kind, 1::numeric AS v
        FROM changed
        WHERE counted AND (new_state = 'STARTED' OR (state_changed AND new_state IN ('SUCCESS', 'FAILURE', 'RETRY', 'REVOKED')))
        UNION ALL
        SELECT 'celery_task_runtime', name, queue, '', '', monitoring_bucket(runtime, '{{{COUNTERS.TASK_SECONDS}}}'), 1
        FROM changed WHERE runtime IS NOT NULL
        UNION ALL
        SELECT 'celery_task_runtime', name, queue, '', '', 'sum', runtime FROM changed WHERE runtime IS NOT NULL
        UNION ALL
        SELECT 'claw_task_queue_wait_seconds', '', queue, '', '', monitoring_bucket(wait, '{{{COUNTERS.TASK_SECONDS}}}'), 1
        FROM changed WHERE wait IS NOT NULL
        UNION ALL
        SELECT 'claw_task_queue_wait_seconds', '', queue, '', '', 'sum', wait FROM changed WHERE wait IS NOT NULL
        UNION ALL
        SELECT 'claw_running_tasks', '', '', '', old_worker, '', -1
        FROM changed WHERE running_moved AND old_state = 'STARTED' AND old_worker <> ''
        UNION ALL
        SELECT 'claw_running_tasks', '', '', '', new_worker, '', 1
        FROM changed WHERE running_moved AND new_state = 'STARTED' AND new_worker <> ''
    ) {APPEND}
    RETURN NULL;
END $$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION monitoring_on_message_insert() RETURNS trigger AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM new_rows WHERE role = 'assistant') THEN
        RETURN NULL;  -- a user's message: nothing to count
    END IF;
    WITH replies AS (
        SELECT model::text AS model, prompt_tokens::numeric AS input, completion_tokens::numeric AS output, cost
        FROM new_rows WHERE role = 'assistant'
    ), deltas AS (
        SELECT 'gen_ai_client_token_usage'::text AS metric, ''::text AS name, ''::text AS queue, model,
               'input'::text AS label, monitoring_bucket(input, '{{{COUNTERS.TOKENS}}}') AS kind, 1::numeric AS v
        FROM replies
        UNION ALL SELECT 'gen_ai_client_token_usage', '', '', model, 'input', 'sum', input FROM replies
        UNION ALL
        SELECT 'gen_ai_client_token_usage', '', '', model, 'output', monitoring_bucket(output, '{{{COUNTERS.TOKENS}}}'), 1
        FROM replies
        UNION ALL SELECT 'gen_ai_client_token_usage', '', '', model, 'output', 'sum', output FROM replies
        UNION ALL SELECT 'claw_llm_cost_usd_total', '', '', model, '', '', cost FROM replies
    ) {APPEND}
    RETURN NULL;
END $$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION monitoring_running_on_delete() RETURNS trigger AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM old_rows WHERE state = 'STARTED' AND worker <> '') THEN
        WITH deltas AS (
            SELECT 'claw_running_tasks'::text AS metric, ''::text AS name, ''::text AS queue, ''::text AS model,
                   worker::text AS label, ''::text AS kind, -1::numeric AS v
            FROM old_rows WHERE state = 'STARTED' AND worker <> ''
        ) {APPEND}
    END IF;
    RETURN NULL;
END $$ LANGUAGE plpgsql;

DROP TRIGGER IF EXISTS monitoring_running_insert ON tasks_app_taskrecord;
DROP TRIGGER IF EXISTS monitoring_running_update ON tasks_app_taskrecord;
DROP FUNCTION IF EXISTS monitoring_running_on_insert();
DROP FUNCTION IF EXISTS monitoring_running_on_update();
"""


def functions(forward: str) -> str:
    """A migration's CREATE OR REPLACE FUNCTION statements, without its CREATE TRIGGERs and what follows."""
    return forward[: forward.index("CREATE TRIGGER")]


RUNNING_TRIGGERS = """
CREATE TRIGGER monitoring_running_insert AFTER INSERT ON tasks_app_taskrecord
REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION monitoring_running_on_insert();
CREATE TRIGGER monitoring_running_update AFTER UPDATE ON tasks_app_taskrecord
REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION monitoring_running_on_update();
"""

# The same statement as monitoring.counters.fold_increments, frozen here.
FOLD = """
WITH moved AS (
    DELETE FROM monitoring_metricincrement RETURNING metric, name, queue, model, label, kind, value
)
INSERT INTO monitoring_metriccounter (metric, name, queue, model, label, kind, slot, value)
SELECT metric, name, queue, model, label, kind, 0, sum(value) FROM moved
GROUP BY metric, name, queue, model, label, kind ORDER BY metric, name, queue, model, label, kind
ON CONFLICT (metric, name, queue, model, label, kind, slot)
DO UPDATE SET value = monitoring_metriccounter.value + EXCLUDED.value;
"""

BACKWARD = functions(COUNTERS.FORWARD) + functions(RUNNING.FORWARD) + RUNNING_TRIGGERS + FOLD


class Migration(migrations.Migration):
    dependencies = [
        ("monitoring", "0004_rollup_folded"),
    ]

    operations = [
        migrations.CreateModel(
            name="MetricIncrement",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("metric", models.CharField(help_text="Prometheus metric name.", max_length=100, verbose_name="metric")),
                ("name", models.CharField(blank=True, default="", max_length=255, verbose_name="task name")),
                ("queue", models.CharField(blank=True, default="", max_length=100, verbose_name="queue")),
                (
                    "model",
                    models.CharField(blank=True, default="", help_text="LLM model.", max_length=255, verbose_name="model"),
                ),
                (
                    "label",
                    models.CharField(
                        blank=True,
                        default="",
                        help_text="The metric's own label, e.g. token type.",
                        max_length=100,
                        verbose_name="label",
                    ),
                ),
                (
                    "kind",
                    models.CharField(
                        blank=True,
                        default="",
                        help_text='"" a counter; "b<n>" a bucket; "sum".',
                        max_length=10,
                        verbose_name="kind",
                    ),
                ),
                ("value", models.DecimalField(decimal_places=6, default=0, max_digits=24, verbose_name="value")),
            ],
            options={
                "verbose_name": "metric increment",
                "verbose_name_plural": "metric increments",
                "default_permissions": (),
            },
        ),
        migrations.RunSQL(FORWARD, BACKWARD),
    ]
