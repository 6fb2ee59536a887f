"""The dashboard's rollup (monitoring.models.MetricRollup), kept by triggers of its own.

Why: the dashboard read every record of its range (a week on the million-record bench table:
692 ms). It now reads per-minute and per-hour sums, whose number grows with the range and the
number of task names and models, not with the records.

Statement-level triggers with transition tables, as migration 0001's counters, but a mirror
rather than a counter: each finished record adds its figures to the bins of its done_at, and an
update that changes a finished record's figures takes the old ones away first, so the rollup
always equals the sums over the records written (tests/monitoring/test_rollup.py checks it).
Deleting records takes nothing away: the cleanup job must not erase history from the charts.
The bins of a statement's rows are upserted in sorted order (no deadlock between writers).

Histogram buckets: bucket k holds values in (0.001·1.1^(k-1), 0.001·1.1^k] seconds (bucket 0:
up to 1 ms; 200 is the last), so a percentile read from them is within 10% of the true one.
monitoring.rollup holds the same numbers for the reading side.

The migration fills the rollup from the records and replies already there (the bench's million
records: a few seconds).
"""

from django.db import migrations, models

FINAL = "('SUCCESS', 'FAILURE', 'REVOKED')"

BUCKET = """
CREATE OR REPLACE FUNCTION monitoring_rollup_bucket(seconds numeric) RETURNS smallint AS $$
    SELECT CASE WHEN seconds <= 0.001 THEN 0
                ELSE least(200, ceil(ln(seconds / 0.001) / ln(1.1)))::smallint END
$$ LANGUAGE sql IMMUTABLE;
"""

UPSERT = """
INSERT INTO monitoring_metricrollup (span, bin, figure, name, label, tenant, bucket, value)
SELECT span, bin, figure, name, label, tenant, bucket, sum(v)
FROM deltas GROUP BY 1, 2, 3, 4, 5, 6, 7 ORDER BY 1, 2, 3, 4, 5, 6, 7
ON CONFLICT (span, bin, figure, name, label, tenant, bucket)
DO UPDATE SET value = monitoring_metricrollup.value + EXCLUDED.value;
"""


def task_deltas(finished: str) -> str:
    """The rollup rows of `finished` (sign, task_name, state, created_at, eta, started_at, done_at)."""
    return f"""
    spans AS (SELECT unnest(ARRAY[60, 3600]) AS span),
    binned AS (
        SELECT span, date_bin(span * interval '1 second', done_at, 'epoch'::timestamptz) AS bin, f.*
        FROM ({finished}) AS f, spans
    ), deltas AS (
        SELECT span, bin, 'finished'::text AS figure, task_name::text AS name, state::text AS label,
               0::bigint AS tenant, 0::smallint AS bucket, sign::numeric AS v
        FROM binned
        UNION ALL
        SELECT span, bin, 'runtime', task_name, '', 0,
               monitoring_rollup_bucket(greatest(0, extract(epoch FROM done_at - started_at))), sign
        FROM binned WHERE state IN ('SUCCESS', 'FAILURE') AND started_at IS NOT NULL
        UNION ALL
        SELECT span, bin, 'wait', task_name, '', 0,
               monitoring_rollup_bucket(greatest(0, extract(epoch FROM
                   started_at - greatest(created_at, coalesce(eta, created_at))))), sign
        FROM binned WHERE state IN ('SUCCESS', 'FAILURE') AND started_at IS NOT NULL
        UNION ALL
        SELECT span, bin, 'turnaround', task_name, '', 0,
               monitoring_rollup_bucket(greatest(0, extract(epoch FROM done_at - created_at))), sign
        FROM binned WHERE state = 'SUCCESS'
    )"""


def reply_deltas(replies: str) -> str:
    """The rollup rows of `replies` (sign, created_at, model, tokens, cost, user_id, tenant)."""
    return f"""
    spans AS (SELECT unnest(ARRAY[60, 3600]) AS span),
    binned AS (
        SELECT span, date_bin(span * interval '1 second', created_at, 'epoch'::timestamptz) AS bin, r.*
        FROM ({replies}) AS r, spans
    ), deltas AS (
        SELECT span, bin, 'tokens'::text AS figure, model::text AS name, ''::text AS label, 0::bigint AS tenant,
               0::smallint AS bucket, (sign * tokens)::numeric AS v
        FROM binned
        UNION ALL
        SELECT span, bin, 'cost', model, '', 0, 0, sign * cost FROM binned
        UNION ALL
        SELECT span, bin, 'user_cost', '', user_id, tenant, 0, sign * cost FROM binned
    )"""


def finished_records(rows: str, sign: int) -> str:
    return (
        f"SELECT {sign} AS sign, task_name, state, created_at, eta, started_at, done_at FROM {rows} "
        f"WHERE state IN {FINAL} AND done_at IS NOT NULL"
    )


def assistant_replies(rows: str, sign: int) -> str:
    return (
        f"SELECT {sign} AS sign, m.created_at, m.model, m.prompt_tokens + m.completion_tokens AS tokens, m.cost, "
        f"c.user_id, coalesce(c.created_by_id, 0) AS tenant "
        f"FROM {rows} m JOIN conversations_conversation c ON c.id = m.conversation_id WHERE m.role = 'assistant'"
    )


# An update changes a record's figures when one of these changes.
RECORD_COLUMNS = "task_name, state, created_at, eta, started_at, done_at"
REPLY_COLUMNS = "role, created_at, model, prompt_tokens, completion_tokens, cost, conversation_id"


def _changed(columns: str) -> str:
    old = ", ".join(f"o.{column.strip()}" for column in columns.split(","))
    new = ", ".join(f"n.{column.strip()}" for column in columns.split(","))
    return f"ROW({old}) IS DISTINCT FROM ROW({new})"


FORWARD = f"""
{BUCKET}

CREATE OR REPLACE FUNCTION monitoring_rollup_on_taskrecord_insert() RETURNS trigger AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM new_rows WHERE state IN {FINAL}) THEN
        RETURN NULL;  -- a published task: nothing finished to add
    END IF;
    WITH {task_deltas(finished_records("new_rows", 1))} {UPSERT}
    RETURN NULL;
END $$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION monitoring_rollup_on_taskrecord_update() RETURNS trigger AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM new_rows WHERE state IN {FINAL})
       AND NOT EXISTS (SELECT 1 FROM old_rows WHERE state IN {FINAL}) THEN
        RETURN NULL;  -- a start, a retry, a re-send: no finished record before or after
    END IF;
    WITH changed_ids AS (
        SELECT n.id FROM old_rows o JOIN new_rows n ON n.id = o.id WHERE {_changed(RECORD_COLUMNS)}
    ), {task_deltas(
        finished_records("(SELECT * FROM old_rows WHERE id IN (SELECT id FROM changed_ids)) AS o", -1)
        + " UNION ALL "
        + finished_records("(SELECT * FROM new_rows WHERE id IN (SELECT id FROM changed_ids)) AS n", 1)
    )} {UPSERT}
    RETURN NULL;
END $$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION monitoring_rollup_on_message_insert() RETURNS trigger AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM new_rows WHERE role = 'assistant') THEN
        RETURN NULL;
    END IF;
    WITH {reply_deltas(assistant_replies("new_rows", 1))} {UPSERT}
    RETURN NULL;
END $$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION monitoring_rollup_on_message_update() RETURNS trigger AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM new_rows WHERE role = 'assistant')
       AND NOT EXISTS (SELECT 1 FROM old_rows WHERE role = 'assistant') THEN
        RETURN NULL;
    END IF;
    WITH changed_ids AS (
        SELECT n.id FROM old_rows o JOIN new_rows n ON n.id = o.id WHERE {_changed(REPLY_COLUMNS)}
    ), {reply_deltas(
        assistant_replies("(SELECT * FROM old_rows WHERE id IN (SELECT id FROM changed_ids))", -1)
        + " UNION ALL "
        + assistant_replies("(SELECT * FROM new_rows WHERE id IN (SELECT id FROM changed_ids))", 1)
    )} {UPSERT}
    RETURN NULL;
END $$ LANGUAGE plpgsql;

CREATE TRIGGER monitoring_rollup_taskrecord_insert AFTER INSERT ON tasks_app_taskrecord
REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION monitoring_rollup_on_taskrecord_insert();
CREATE TRIGGER monitoring_rollup_taskrecord_update AFTER UPDATE ON tasks_app_taskrecord
REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
FOR EACH STATEMENT EXECUTE FUNCTION monitoring_rollup_on_taskrecord_update();
CREATE TRIGGER monitoring_rollup_message_insert AFTER INSERT ON conversations_message
REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION monitoring_rollup_on_message_insert();
CREATE TRIGGER monitoring_rollup_message_update AFTER UPDATE ON conversations_message
REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
FOR EACH STATEMENT EXECUTE FUNCTION monitoring_rollup_on_message_update();
"""

# What is there already (tests/monitoring/test_rollup.py runs it again to check it).
BACKFILL = f"""
WITH {task_deltas(finished_records("tasks_app_taskrecord", 1))} {UPSERT}
WITH {reply_deltas(assistant_replies("conversations_message", 1))} {UPSERT}
ANALYZE monitoring_metricrollup;
"""

BACKWARD = """
DROP TRIGGER IF EXISTS monitoring_rollup_taskrecord_insert ON tasks_app_taskrecord;
DROP TRIGGER IF EXISTS monitoring_rollup_taskrecord_update ON tasks_app_taskrecord;
DROP TRIGGER IF EXISTS monitoring_rollup_message_insert ON conversations_message;
DROP TRIGGER IF EXISTS monitoring_rollup_message_update ON conversations_message;
DROP FUNCTION IF EXISTS monitoring_rollup_on_taskrecord_insert();
DROP FUNCTION IF EXISTS monitoring_rollup_on_taskrecord_update();
DROP FUNCTION IF EXISTS monitoring_rollup_on_message_insert();
DROP FUNCTION IF EXISTS monitoring_rollup_on_message_update();
DROP FUNCTION IF EXISTS monitoring_rollup_bucket(numeric);
"""


class Migration(migrations.Migration):
    dependencies = [
        ("monitoring", "0001_initial"),
    ]

    operations = [
        migrations.CreateModel(
            name="MetricRollup",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                (
                    "span",
                    models.PositiveIntegerField(
                        help_text="Width of the time bin: 60 or 3600.", verbose_name="span (seconds)"
                    ),
                ),
                (
                    "bin",
                    models.DateTimeField(
                        help_text="Start of the time bin (UTC, aligned to the span).", verbose_name="bin"
                    ),
                ),
                (
                    "figure",
                    models.CharField(
                        help_text="finished, runtime, wait, turnaround, tokens, cost or user_cost.",
                        max_length=20,
                        verbose_name="figure",
                    ),
                ),
                (
                    "name",
                    models.CharField(
                        blank=True, default="", help_text="Task name or model.", max_length=255, verbose_name="name"
                    ),
                ),
                (
                    "label",
                    models.CharField(
                        blank=True,
                        default="",
                        help_text="Final state, or the chat user of user_cost.",
                        max_length=255,
                        verbose_name="label",
                    ),
                ),
                (
                    "tenant",
                    models.BigIntegerField(
                        default=0,
                        help_text="The chat user's tenant (API user id; 0: made from code) for user_cost.",
                        verbose_name="tenant",
                    ),
                ),
                (
                    "bucket",
                    models.SmallIntegerField(
                        default=0,
                        help_text="Histogram bucket of runtime, wait and turnaround (monitoring.rollup).",
                        verbose_name="bucket",
                    ),
                ),
                ("value", models.DecimalField(decimal_places=6, default=0, max_digits=24, verbose_name="value")),
            ],
            options={
                "verbose_name": "metric rollup",
                "verbose_name_plural": "metric rollups",
                "default_permissions": (),
                "constraints": [
                    models.UniqueConstraint(
                        fields=("span", "bin", "figure", "name", "label", "tenant", "bucket"),
                        name="metricrollup_series_bin",
                    )
                ],
            },
        ),
        migrations.RunSQL(FORWARD, BACKWARD),
        migrations.RunSQL(BACKFILL, migrations.RunSQL.noop),
    ]
