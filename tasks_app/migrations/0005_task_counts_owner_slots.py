"""Each submitting user's task counts spread over the 8 slots too, as the global counts are.

With the owner rows in slot 0 only, every task one API user submits updates the same row,
and its lock is held until the inserting transaction commits: concurrent submissions of one
user (a chat backend submits everything under one account) queue on that row. Readers
already sum over slots (tasks_app.selectors), so only the trigger functions change.
"""

from django.db import migrations

from tasks_app.record_triggers import COUNT_FUNCTIONS_0003, COUNT_FUNCTIONS_0005


class Migration(migrations.Migration):
    dependencies = [("tasks_app", "0004_state_queue_created_index")]

    operations = [migrations.RunSQL(COUNT_FUNCTIONS_0005, COUNT_FUNCTIONS_0003)]
