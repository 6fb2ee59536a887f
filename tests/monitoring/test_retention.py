"""The daily job keeps the dashboard's rollup to what its charts read: minute and hour bins past
their keeping time go, everything the charts draw stays, and the Prometheus counters are never touched."""

from datetime import timedelta

import pytest
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from monitoring.models import MetricCounter, MetricRollup
from monitoring.rollup import HOUR, MINUTE
from tasks_app.schedules import ensure_periodic_tasks
from tasks_app.tasks.maintenance_tasks import fold_metrics, prune_dashboard_rollup
from tests.foundation.test_settings import run_python

pytestmark = pytest.mark.django_db


def bin_at(span: int, age: timedelta, label: str) -> MetricRollup:
    at = timezone.now() - age
    aligned = at.replace(second=0, microsecond=0) if span == MINUTE else at.replace(minute=0, second=0, microsecond=0)
    return MetricRollup.objects.create(span=span, bin=aligned, figure="finished", name="t", label=label, value=1)


def test_bins_past_their_keeping_time_go_and_the_rest_stay(settings):
    # given minute bins kept 2 days, hour bins 90, and bins on both sides of each
    settings.METRICS_ROLLUP_MINUTE_BINS_DAYS = 2
    settings.METRICS_ROLLUP_HOUR_BINS_DAYS = 90
    # (nothing else in the tables: what another test's worker wrote late is no concern of this one)
    MetricRollup.objects.all().delete()
    MetricCounter.objects.all().delete()
    for n in range(7):
        bin_at(MINUTE, timedelta(days=3, minutes=n), f"old minute {n}")
    bin_at(MINUTE, timedelta(minutes=5), "minute of the last hour")
    bin_at(MINUTE, timedelta(days=1, hours=23), "minute of yesterday")
    bin_at(HOUR, timedelta(days=91), "old hour")
    bin_at(HOUR, timedelta(days=3), "hour of the week")
    bin_at(HOUR, timedelta(days=60), "hour of two months ago")
    MetricCounter.objects.create(metric="celery_task_succeeded_total", name="t", queue="default", slot=0, value=7)

    # when the job runs (batches of TASK_CLEANUP_BATCH_SIZE rows: here 3, so the old minutes take three)
    settings.TASK_CLEANUP_BATCH_SIZE = 3
    report = prune_dashboard_rollup()

    # then
    assert report == {"minute_rows": 7, "hour_rows": 1, "more": False}
    assert set(MetricRollup.objects.values_list("label", flat=True)) == {
        "minute of the last hour",
        "minute of yesterday",
        "hour of the week",
        "hour of two months ago",
    }
    assert MetricCounter.objects.get().value == 7


def test_the_fold_job_exists_after_migrate_and_runs_every_30_seconds():
    # given the system's jobs as a deploy's migrate creates them
    ensure_periodic_tasks()

    # then the fold of the counters' increments and the dashboard's bins is one of them
    job = PeriodicTask.objects.get(task="tasks_app.tasks.maintenance_tasks.fold_metrics")
    assert job.enabled
    assert (job.interval.every, job.interval.period) == (30, "seconds")
    # and a run the workers could not start in time is dropped, not queued behind the next ones
    assert job.expire_seconds == 30
    # and it runs
    assert set(fold_metrics()) == {"counter_series", "rollup_start", "minute_rows", "hour_rows"}


def test_the_job_exists_after_migrate_and_runs_daily():
    # given the system's jobs as a deploy's migrate creates them
    ensure_periodic_tasks()

    # then the pruning job is one of them, on a daily crontab
    job = PeriodicTask.objects.get(task="tasks_app.tasks.maintenance_tasks.prune_dashboard_rollup")
    assert job.enabled
    assert (job.crontab.minute, job.crontab.hour, job.crontab.day_of_month) == ("45", "3", "*")


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("METRICS_ROLLUP_HOUR_BINS_DAYS", "3", "METRICS_ROLLUP_HOUR_BINS_DAYS='3' is out of range: expected 7 to 3650"),
        ("METRICS_ROLLUP_MINUTE_BINS_DAYS", "0", "METRICS_ROLLUP_MINUTE_BINS_DAYS='0' is out of range"),
        ("METRICS_ROLLUP_MINUTE_BINS_DAYS", "a week", "METRICS_ROLLUP_MINUTE_BINS_DAYS='a week' is not a number"),
    ],
)
def test_a_keeping_time_the_charts_cannot_live_with_stops_the_process_at_start_up(variable, value, says):
    # when a process loads the settings with a keeping time shorter than its chart, or not a number
    result = run_python(
        "import django; django.setup()", DJANGO_SETTINGS_MODULE="claw_ai.settings.test", **{variable: value}
    )

    # then it does not start, and says which variable and what is accepted
    assert result.returncode != 0
    assert says in result.stderr
