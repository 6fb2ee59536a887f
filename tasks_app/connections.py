"""Database connections around each task, by Django's rules rather than Celery's.

Celery's Django fixup closes the worker's connections before and after every task (unless
CELERY_DB_REUSE_MAX is set, see settings). Django closes a connection at the end of a request
only when it is broken or older than CONN_MAX_AGE (`close_old_connections`); doing the same
around each task keeps a healthy connection for the next one and still replaces a dead one
before it is used. Under a threads worker with a psycopg pool (CONN_MAX_AGE 0) the connection
goes back to the pool after every task, as before.
"""

from celery.signals import task_postrun, task_prerun
from django.db import close_old_connections


@task_prerun.connect(dispatch_uid="tasks_app.connections.before_task")
def before_task(**_kwargs) -> None:
    close_old_connections()


@task_postrun.connect(dispatch_uid="tasks_app.connections.after_task")
def after_task(**_kwargs) -> None:
    close_old_connections()
