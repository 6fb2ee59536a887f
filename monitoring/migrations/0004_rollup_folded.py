"""The dashboard's rollup is folded from the records and replies (monitoring.fold), not kept by triggers.

Why: migration 0002's triggers upserted the rollup's hot rows in the transaction of every task
record's finish and every reply (issue 19; monitoring.fold's docstring has the figures). This
drops them and adds what a fold reads and where it stands:
- RollupFold, one row: where the last fold ended. It starts now, as the triggers kept the rollup
  up to this migration.
- an index on the replies' created_at (partial: assistant messages only), as task records have
  one on done_at: a fold reads the last minute or two of each.
The bucket function monitoring_rollup_bucket stays (the fold uses it).

Backwards: the rollup's bins from the hour of the last fold on are rebuilt from the records and
replies with migration 0002's own statements, then its triggers take over again.
"""

import importlib

from django.db import migrations, models

ROLLUP = importlib.import_module("monitoring.migrations.0002_metricrollup")

DROP_TRIGGERS = """
DROP TRIGGER IF EXISTS monitoring_rollup_taskrecord_insert ON tasks_app_taskrecord;
DROP TRIGGER IF EXISTS monitoring_rollup_taskrecord_update ON tasks_app_taskrecord;
DROP TRIGGER IF EXISTS monitoring_rollup_message_insert ON conversations_message;
DROP TRIGGER IF EXISTS monitoring_rollup_message_update ON conversations_message;
DROP FUNCTION IF EXISTS monitoring_rollup_on_taskrecord_insert();
DROP FUNCTION IF EXISTS monitoring_rollup_on_taskrecord_update();
DROP FUNCTION IF EXISTS monitoring_rollup_on_message_insert();
DROP FUNCTION IF EXISTS monitoring_rollup_on_message_update();
"""

REPLY_INDEX = "monitoring_reply_created_idx"

FORWARD = f"""
{DROP_TRIGGERS}
CREATE INDEX IF NOT EXISTS {REPLY_INDEX} ON conversations_message (created_at) WHERE role = 'assistant';
INSERT INTO monitoring_rollupfold (id, folded_until) VALUES (1, now());
"""

# The first bin the folds may have written since the triggers stopped (a fold recomputes 60 s back).
FOLDED_FROM = (
    "(SELECT date_bin('3600 seconds', folded_until - interval '60 seconds', 'epoch'::timestamptz) "
    "FROM monitoring_rollupfold)"
)

BACKWARD = f"""
DELETE FROM monitoring_metricrollup WHERE bin >= {FOLDED_FROM};
WITH {ROLLUP.task_deltas(ROLLUP.finished_records(
    f"(SELECT * FROM tasks_app_taskrecord WHERE done_at >= {FOLDED_FROM}) AS r", 1
))} {ROLLUP.UPSERT}
WITH {ROLLUP.reply_deltas(ROLLUP.assistant_replies(
    f"(SELECT * FROM conversations_message WHERE created_at >= {FOLDED_FROM})", 1
))} {ROLLUP.UPSERT}
{ROLLUP.FORWARD}
DROP INDEX IF EXISTS {REPLY_INDEX};
"""


class Migration(migrations.Migration):
    dependencies = [
        ("monitoring", "0003_running_tasks_per_worker"),
        ("conversations", "0002_reindex_unspaced_scripts"),
    ]

    operations = [
        migrations.CreateModel(
            name="RollupFold",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                (
                    "folded_until",
                    models.DateTimeField(
                        help_text="The time of the last fold: the rollup holds what was committed by then.",
                        verbose_name="folded until",
                    ),
                ),
            ],
            options={
                "verbose_name": "rollup fold",
                "verbose_name_plural": "rollup folds",
                "default_permissions": (),
            },
        ),
        migrations.RunSQL(FORWARD, BACKWARD),
    ]
