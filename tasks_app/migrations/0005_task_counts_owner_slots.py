"""Each submitting user's task counts spread over the 8 slots too, as the global counts are.

With the owner rows in slot 0 only, every task one API user submits updates the same row,
and its lock is held until the inserting transaction commits: concurrent submissions of one
user (a chat backend submits everything under one account) queue on that row. Readers
already sum over slots (tasks_app.selectors), so only the trigger functions change.
"""

import importlib

from django.db import migrations

previous = importlib.import_module("tasks_app.migrations.0003_task_counts_per_owner_and_statement")
# The three functions of 0003 (the triggers that call them stay), with the slot chosen at random for every row.
FUNCTIONS_0003 = previous.STATEMENT_TRIGGERS.split("CREATE TRIGGER")[0]
FUNCTIONS_SPREAD = FUNCTIONS_0003.replace(
    "CASE WHEN owner = -1 THEN floor(random() * 8)::int ELSE 0 END", "floor(random() * 8)::int"
)
assert FUNCTIONS_SPREAD != FUNCTIONS_0003


class Migration(migrations.Migration):
    dependencies = [("tasks_app", "0004_state_queue_created_index")]

    operations = [migrations.RunSQL(FUNCTIONS_SPREAD, FUNCTIONS_0003)]
