"""Task counts spread over 64 slots instead of 8 (tasks_app.record_triggers, 0008).

Concurrent submitters wait on a count row another submitter's transaction holds until its commit;
more slots make that rare. Readers already sum over slots, so only the trigger functions change.
"""

from django.db import migrations

from tasks_app.record_triggers import COUNT_FUNCTIONS, COUNT_FUNCTIONS_0005


class Migration(migrations.Migration):
    dependencies = [("tasks_app", "0007_deleted_periodic_job")]

    operations = [migrations.RunSQL(COUNT_FUNCTIONS, COUNT_FUNCTIONS_0005)]
