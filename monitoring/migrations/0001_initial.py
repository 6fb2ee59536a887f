"""The metric counters, and the PostgreSQL triggers that count task and reply events in them.

Statement-level triggers with transition tables, as tasks_app's TaskCount (migration 0003 there):
one grouped upsert per statement, in the same transaction as the write it counts, so a counter
never disagrees with the records and never depends on which process wrote them. Rows are spread
over 8 random slots so concurrent writers rarely wait on one row. Deleting records counts nothing.

The bucket bounds below are frozen copies of monitoring.buckets (a test checks they agree).
"""

from django.db import migrations, models

TASK_SECONDS = "0.005,0.01,0.025,0.05,0.1,0.25,0.5,1,2.5,5,10,30,60,120,300,600"
TOKENS = "1,4,16,64,256,1024,4096,16384,65536,262144,1048576,4194304"

APPLY = """
INSERT INTO monitoring_metriccounter (metric, name, queue, model, label, kind, slot, value)
SELECT metric, name, queue, model, label, kind, floor(random() * 8)::int, sum(v)
FROM deltas GROUP BY metric, name, queue, model, label, kind ORDER BY 1, 2, 3, 4, 5, 6
ON CONFLICT (metric, name, queue, model, label, kind, slot)
DO UPDATE SET value = monitoring_metriccounter.value + EXCLUDED.value;
"""

FORWARD = f"""
CREATE OR REPLACE FUNCTION monitoring_bucket(v numeric, bounds numeric[]) RETURNS text AS $$
    SELECT 'b' || (1 + (SELECT count(*) FROM unnest(bounds) AS bound WHERE bound < v))::text
$$ LANGUAGE sql IMMUTABLE;

CREATE OR REPLACE FUNCTION monitoring_on_taskrecord_insert() RETURNS trigger AS $$
BEGIN
    WITH deltas AS (
        SELECT 'celery_task_sent_total'::text AS metric, task_name::text AS name, queue::text AS queue,
               ''::text AS model, ''::text AS label, ''::text AS kind, 1::numeric AS v
        FROM new_rows
    ) {APPLY}
    RETURN NULL;
END $$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION monitoring_on_taskrecord_update() RETURNS trigger AS $$
BEGIN
    WITH changed AS (
        SELECT n.task_name::text AS name, n.queue::text AS queue, o.state AS old_state, n.state AS new_state,
               o.state IS DISTINCT FROM n.state AS state_changed,
               CASE WHEN n.state IN ('SUCCESS', 'FAILURE') AND o.state IS DISTINCT FROM n.state AND n.started_at IS NOT NULL AND n.done_at IS NOT NULL
                    THEN greatest(0, extract(epoch FROM n.done_at - n.started_at)) END AS runtime,
               CASE WHEN o.state = 'PENDING' AND n.state = 'STARTED' AND n.started_at IS NOT NULL
                    THEN greatest(0, extract(epoch FROM n.started_at - greatest(n.created_at, coalesce(n.eta, n.created_at))))
               END AS wait
        FROM old_rows o JOIN new_rows n ON n.id = o.id
        WHERE o.state IS DISTINCT FROM n.state
           -- every run writes STARTED with its start time: a retry that started before the first
           -- run's RETRY was written, or a redelivery after a crash, starts again STARTED -> STARTED.
           OR (n.state = 'STARTED' AND o.started_at IS DISTINCT FROM n.started_at)
    ), deltas AS (
        SELECT CASE new_state WHEN 'STARTED' THEN 'celery_task_started_total'
                              WHEN 'SUCCESS' THEN 'celery_task_succeeded_total'
                              WHEN 'FAILURE' THEN 'celery_task_failed_total'
                              WHEN 'RETRY' THEN 'celery_task_retried_total'
                              WHEN 'REVOKED' THEN 'celery_task_revoked_total' END AS metric,
               name, queue, ''::text AS model, ''::text AS label, ''::text AS kind, 1::numeric AS v
        FROM changed WHERE new_state = 'STARTED' OR (state_changed AND new_state IN ('SUCCESS', 'FAILURE', 'RETRY', 'REVOKED'))
        UNION ALL
        SELECT 'celery_task_runtime', name, queue, '', '', monitoring_bucket(runtime, '{{{TASK_SECONDS}}}'), 1
        FROM changed WHERE runtime IS NOT NULL
        UNION ALL
        SELECT 'celery_task_runtime', name, queue, '', '', 'sum', runtime FROM changed WHERE runtime IS NOT NULL
        UNION ALL
        SELECT 'claw_task_queue_wait_seconds', '', queue, '', '', monitoring_bucket(wait, '{{{TASK_SECONDS}}}'), 1
        FROM changed WHERE wait IS NOT NULL
        UNION ALL
        SELECT 'claw_task_queue_wait_seconds', '', queue, '', '', 'sum', wait FROM changed WHERE wait IS NOT NULL
    ) {APPLY}
    RETURN NULL;
END $$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION monitoring_on_message_insert() RETURNS trigger AS $$
BEGIN
    WITH replies AS (
        SELECT model::text AS model, prompt_tokens::numeric AS input, completion_tokens::numeric AS output, cost
        FROM new_rows WHERE role = 'assistant'
    ), deltas AS (
        SELECT 'gen_ai_client_token_usage'::text AS metric, ''::text AS name, ''::text AS queue, model,
               'input'::text AS label, monitoring_bucket(input, '{{{TOKENS}}}') AS kind, 1::numeric AS v
        FROM replies
        UNION ALL SELECT 'gen_ai_client_token_usage', '', '', model, 'input', 'sum', input FROM replies
        UNION ALL
        SELECT 'gen_ai_client_token_usage', '', '', model, 'output', monitoring_bucket(output, '{{{TOKENS}}}'), 1
        FROM replies
        UNION ALL SELECT 'gen_ai_client_token_usage', '', '', model, 'output', 'sum', output FROM replies
        UNION ALL SELECT 'claw_llm_cost_usd_total', '', '', model, '', '', cost FROM replies
    ) {APPLY}
    RETURN NULL;
END $$ LANGUAGE plpgsql;

CREATE TRIGGER monitoring_taskrecord_insert AFTER INSERT ON tasks_app_taskrecord
REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION monitoring_on_taskrecord_insert();
CREATE TRIGGER monitoring_taskrecord_update AFTER UPDATE ON tasks_app_taskrecord
REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
FOR EACH STATEMENT EXECUTE FUNCTION monitoring_on_taskrecord_update();
CREATE TRIGGER monitoring_message_insert AFTER INSERT ON conversations_message
REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION monitoring_on_message_insert();
"""

BACKWARD = """
DROP TRIGGER IF EXISTS monitoring_taskrecord_insert ON tasks_app_taskrecord;
DROP TRIGGER IF EXISTS monitoring_taskrecord_update ON tasks_app_taskrecord;
DROP TRIGGER IF EXISTS monitoring_message_insert ON conversations_message;
DROP FUNCTION IF EXISTS monitoring_on_taskrecord_insert();
DROP FUNCTION IF EXISTS monitoring_on_taskrecord_update();
DROP FUNCTION IF EXISTS monitoring_on_message_insert();
DROP FUNCTION IF EXISTS monitoring_bucket(numeric, numeric[]);
"""


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("tasks_app", "0005_task_counts_owner_slots"),
        ("conversations", "0002_reindex_unspaced_scripts"),
    ]

    operations = [
        migrations.CreateModel(
            name="MetricCounter",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("metric", models.CharField(help_text="Prometheus metric name.", max_length=100, verbose_name="metric")),
                ("name", models.CharField(blank=True, default="", max_length=255, verbose_name="task name")),
                ("queue", models.CharField(blank=True, default="", max_length=100, verbose_name="queue")),
                ("model", models.CharField(blank=True, default="", help_text="LLM model.", max_length=255, verbose_name="model")),
                ("label", models.CharField(blank=True, default="", help_text="The metric's own label, e.g. token type.", max_length=100, verbose_name="label")),
                ("kind", models.CharField(blank=True, default="", help_text='"" a counter; "b<n>" a bucket; "sum".', max_length=10, verbose_name="kind")),
                ("slot", models.PositiveSmallIntegerField(help_text="Spreads concurrent writers over rows.", verbose_name="slot")),
                ("value", models.DecimalField(decimal_places=6, default=0, max_digits=24, verbose_name="value")),
            ],
            options={
                "verbose_name": "metric counter",
                "verbose_name_plural": "metric counters",
                "default_permissions": (),
                "permissions": [("view_metrics", "Can view metrics and the monitoring dashboard")],
                "constraints": [
                    models.UniqueConstraint(
                        fields=("metric", "name", "queue", "model", "label", "kind", "slot"),
                        name="metriccounter_series_slot",
                    )
                ],
            },
        ),
        migrations.RunSQL(FORWARD, BACKWARD),
    ]
