"""The counting triggers append their deltas to MetricIncrement instead of upserting the counters.

Why (issue 19): migrations 0001 and 0003 upserted the counter rows (8 slots a series) in the
transaction of every task record write and reply; with a hundred replies in flight, writers
queued on those rows' locks: a drain of 1,000 replies with the rollup triggers gone (migration
0004) still spent 5.3 ms on a STARTED write, 4.2 ms on a SUCCESS write and 3.8 ms on a reply's
insert, against 1.0, 0.8 and 0.1 ms with no monitoring trigger at all. An INSERT of new rows
waits on nobody. The counted events stay the same, counted by the same triggers in the writing
transaction, so the counts still agree with the records whoever wrote them; only where a delta
goes changes. A fold moves the deltas into the counters (monitoring.counters.fold_increments, a
periodic job), and a scrape adds the deltas not folded yet, in one snapshot.

The functions keep their names (the triggers stay as they are); their text is migration 0001's
and 0003's with the upsert replaced. Backwards: the deltas are folded, the old texts restored.
"""

import importlib

from django.db import migrations, models

COUNTERS = importlib.import_module("monitoring.migrations.0001_initial")
RUNNING = importlib.import_module("monitoring.migrations.0003_running_tasks_per_worker")

APPEND = """
INSERT INTO monitoring_metricincrement (metric, name, queue, model, label, kind, value)
SELECT metric, name, queue, model, label, kind, sum(v) FROM deltas GROUP BY metric, name, queue, model, label, kind;
"""

APPEND_RUNNING = """
INSERT INTO monitoring_metricincrement (metric, name, queue, model, label, kind, value)
SELECT 'claw_running_tasks', '', '', '', worker, '', sum(v) FROM deltas GROUP BY worker;
"""


def functions(forward: str) -> str:
    """A migration's CREATE OR REPLACE FUNCTION statements, without its CREATE TRIGGERs and what follows."""
    return forward[: forward.index("CREATE TRIGGER")]


FORWARD = functions(COUNTERS.FORWARD).replace(COUNTERS.APPLY, APPEND) + functions(RUNNING.FORWARD).replace(
    RUNNING.UPSERT, APPEND_RUNNING
)

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

BACKWARD = functions(COUNTERS.FORWARD) + functions(RUNNING.FORWARD) + FOLD


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
