"""Each storage statement of the task record (tasks_app.records), run against the real database.

They read back through the ORM, so a statement that spells a column the model no longer has, or
a trigger that counts the wrong column, fails here.
"""

import re
import uuid
from datetime import timedelta

import pytest
from celery import states
from django.db import connection
from django.utils import timezone
from django_celery_results.models import TaskResult

from tasks_app import record_triggers, records
from tasks_app.models import TaskCount, TaskRecord, TaskState

pytestmark = pytest.mark.django_db

RESULT = {"content_type": "application/json", "content_encoding": "utf-8", "meta": "{}"}


def published(**fields) -> TaskRecord:
    values = {"task_name": "tests.record_run", "queue": "default", "args": [1], "kwargs": {"a": "b"}, **fields}
    return records.insert_published(task_id=values.pop("task_id", str(uuid.uuid4())), **values)


def stored(record: TaskRecord) -> TaskRecord:
    return TaskRecord.objects.get(pk=record.pk)


def write(record: TaskRecord, status: str, *, error: str = "", result=None) -> bool:
    now = timezone.now()
    fields = records.state_fields(status, worker="w@host", retries=0, error=error, traceback="tb", now=now)
    result_fields = {**RESULT, "status": status, "result": result, "task_name": record.task_name}
    return records.write_state(
        task_id=record.task_id, status=status, record_fields=fields, result_fields=result_fields, now=now
    )


def counts(owner: int = TaskCount.ALL_OWNERS) -> dict[tuple[str, str], int]:
    return {(queue, state): count for queue, state, count in records.counts_by_queue_and_state(owner=owner) if count}


# --- insert at publish -------------------------------------------------------------------------------
def test_insert_at_publish_writes_every_published_field(alice):
    # when a task is recorded as it is published
    eta = timezone.now() + timedelta(minutes=5)
    kwargs = {"user_id": "u1", "conversation_id": "c1"}
    record = published(priority=7, eta=eta, submitted_by_id=alice.pk, kwargs=kwargs, periodic_task_name="job")

    # then the returned record is the stored row
    row = stored(record)
    assert (row.state, row.created_at) == (TaskState.PENDING, record.created_at)
    assert (row.task_name, row.queue, row.priority, row.eta) == ("tests.record_run", "default", 7, eta)
    assert (row.args, row.kwargs, row.submitted_by) == ([1], kwargs, alice)
    assert (row.user_id, row.conversation_id, row.periodic_task_name) == ("u1", "c1", "job")


def test_insert_at_publish_of_a_known_id_keeps_state_creation_and_resend_count():
    # given a record that started and was re-sent once
    first = published()
    TaskRecord.objects.filter(pk=first.pk).update(state=TaskState.STARTED, resent_count=1)

    # when the same id is published again (a re-send, a shell)
    again = published(task_id=first.task_id, queue="knowledge_default", args=[2])

    # then the row is the same, with the new published fields and its own state and history
    row = stored(first)
    assert again.pk == first.pk
    assert again.state == TaskState.STARTED
    assert (row.queue, row.args, row.state, row.resent_count) == ("knowledge_default", [2], TaskState.STARTED, 1)
    assert row.created_at == first.created_at


def test_celery_retry_notes_the_attempt_and_its_eta():
    record = published()
    eta = timezone.now() + timedelta(seconds=30)
    records.note_celery_retry(task_id=record.task_id, retries=2, eta=eta)
    assert (stored(record).retries, stored(record).eta) == (2, eta)


def test_an_unsent_task_leaves_no_record():
    record = published()
    records.forget_unsent(task_id=record.task_id)
    assert not TaskRecord.objects.filter(task_id=record.task_id).exists()


# --- state writes -------------------------------------------------------------------------------------
def test_started_then_success_write_the_record_and_its_task_result():
    record = published()

    assert write(record, states.STARTED)
    row = stored(record)
    assert (row.state, row.worker, row.done_at) == (TaskState.STARTED, "w@host", None)
    assert row.started_at is not None
    assert TaskResult.objects.get(task_id=record.task_id).date_started is not None

    assert write(record, states.SUCCESS, result='"ok"')
    row = stored(record)
    assert row.state == TaskState.SUCCESS
    assert row.done_at is not None
    assert row.started_at is not None
    result = TaskResult.objects.get(task_id=record.task_id)
    assert (result.status, result.result) == (states.SUCCESS, '"ok"')


def test_a_failure_writes_its_error_and_traceback():
    record = published()
    assert write(record, states.FAILURE, error="ValueError: boom")
    row = stored(record)
    assert (row.state, row.error, row.traceback) == (TaskState.FAILURE, "ValueError: boom", "tb")


def test_a_state_of_a_task_without_record_is_still_written_to_its_task_result():
    task_id = str(uuid.uuid4())  # published outside the system
    assert records.write_state(
        task_id=task_id,
        status=states.SUCCESS,
        record_fields=records.state_fields(
            states.SUCCESS, worker=None, retries=None, error="", traceback=None, now=timezone.now()
        ),
        result_fields={**RESULT, "status": states.SUCCESS},
        now=timezone.now(),
    )
    assert TaskResult.objects.get(task_id=task_id).status == states.SUCCESS


def test_revoked_stays_revoked():
    # given a task cancelled while queued
    record = published()
    records.store_revoked(records.lock(pk=record.pk), reason="Cancelled by alice")

    # when a worker that had not heard writes STARTED, then SUCCESS
    assert not write(record, states.STARTED)
    assert not write(record, states.SUCCESS, result="1")

    # then the record and its TaskResult stay REVOKED
    row = stored(record)
    assert (row.state, row.error, row.started_at) == (TaskState.REVOKED, "Cancelled by alice", None)
    assert TaskResult.objects.get(task_id=record.task_id).status == states.REVOKED


def test_a_late_retry_never_overwrites_a_finished_record():
    # given a task whose re-sent run succeeded before the first run's RETRY was stored
    record = published()
    assert write(record, states.SUCCESS, result="1")

    # when the RETRY arrives, then it is refused and nothing changes
    assert not write(record, states.RETRY, error="ValueError: again")
    assert stored(record).state == TaskState.SUCCESS
    assert TaskResult.objects.get(task_id=record.task_id).status == states.SUCCESS


def test_a_retry_of_a_running_task_is_written():
    record = published()
    write(record, states.STARTED)
    assert write(record, states.RETRY, error="ValueError: again")
    assert (stored(record).state, stored(record).error) == (TaskState.RETRY, "ValueError: again")


# --- revoke -----------------------------------------------------------------------------------------
def test_revoke_turns_the_record_and_its_task_result_revoked():
    record = published()
    locked = records.lock(pk=record.pk)
    records.store_revoked(locked, reason="Cancelled by the system")
    row = stored(record)
    assert (row.state, row.error) == (TaskState.REVOKED, "Cancelled by the system")
    assert row.done_at == locked.done_at is not None
    assert TaskResult.objects.get(task_id=record.task_id).status == states.REVOKED


def test_revoked_reads():
    cancelled, running = published(), published()
    records.store_revoked(records.lock(pk=cancelled.pk), reason="x")
    write(running, states.STARTED)
    assert records.is_revoked(task_id=cancelled.task_id)
    assert not records.is_revoked(task_id=running.task_id)
    assert records.revoked_among([cancelled.task_id, running.task_id, "unknown"]) == {cancelled.task_id}


# --- re-send and rescue marks ---------------------------------------------------------------------------
def test_resend_mark_counts_once_per_cutoff():
    record = published()
    cutoff = timezone.now()

    claimed = records.claim_resend(pk=record.pk, cutoff=cutoff)
    assert claimed is not None
    assert (claimed.resent_count, stored(record).resent_count) == (1, 1)
    assert stored(record).resent_at == claimed.resent_at

    # re-sent since the cutoff: not again
    assert records.claim_resend(pk=record.pk, cutoff=cutoff) is None
    assert stored(record).resent_count == 1


def test_resend_mark_skips_a_task_that_started():
    record = published()
    write(record, states.STARTED)
    assert records.claim_resend(pk=record.pk, cutoff=timezone.now()) is None
    assert stored(record).resent_count == 0


def test_rescue_mark_counts_a_resend_of_each_task():
    first, second, untouched = published(), published(), published()
    records.note_rescued([first.task_id, second.task_id])
    assert [stored(r).resent_count for r in (first, second, untouched)] == [1, 1, 0]
    assert stored(first).resent_at is not None
    assert stored(untouched).resent_at is None


# --- counters (the triggers) and the reads by hand ---------------------------------------------------------
def test_counters_follow_insert_state_change_and_delete(alice):
    # given two of alice's tasks and one sent from code
    mine, other = published(submitted_by_id=alice.pk), published(submitted_by_id=alice.pk)
    published(queue="ai_high_priority")
    assert counts() == {("default", "PENDING"): 2, ("ai_high_priority", "PENDING"): 1}
    assert counts(alice.pk) == {("default", "PENDING"): 2}
    assert records.unfinished_count(owner=alice.pk) == 2

    # when one starts and the other finishes
    write(mine, states.STARTED)
    write(other, states.SUCCESS)

    # then the counts move with them
    assert counts(alice.pk) == {("default", "STARTED"): 1, ("default", "SUCCESS"): 1}
    assert records.unfinished_count(owner=alice.pk) == 1

    # and a deleted record leaves the counts
    TaskRecord.objects.filter(pk=mine.pk).delete()
    assert counts(alice.pk) == {("default", "SUCCESS"): 1}
    assert records.unfinished_count(owner=alice.pk) == 0


def test_unfinished_count_covers_pending_started_and_retry(alice):
    _pending, started, retrying, done = (published(submitted_by_id=alice.pk) for _ in range(4))
    write(started, states.STARTED)
    write(retrying, states.RETRY, error="again")
    write(done, states.FAILURE, error="no")
    assert records.unfinished_count(owner=alice.pk) == 3


def test_retry_chain_nearest_first():
    first = published(task_id="chain-1")
    second = published(task_id="chain-2", retry_of_id=first.pk)
    third = published(task_id="chain-3", retry_of_id=second.pk)
    assert records.retry_chain(record_id=third.pk) == ["chain-3", "chain-2", "chain-1"]
    assert records.retry_chain(record_id=third.pk, depth=2) == ["chain-3", "chain-2"]
    assert records.retry_chain(record_id=first.pk) == ["chain-1"]


def test_estimated_rows_is_the_planners_estimate():
    for _ in range(3):
        published()
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {TaskRecord._meta.db_table}")
    assert records.estimated_rows(TaskRecord, using="default") == 3


def test_the_database_runs_the_count_functions_of_record_triggers():
    # given the trigger functions as tasks_app.record_triggers defines them today
    defined = dict(
        re.findall(r"FUNCTION (\w+)\(\) RETURNS trigger AS \$\$(.*?)\$\$", record_triggers.COUNT_FUNCTIONS, re.S)
    )
    assert len(defined) == 3

    # then the migrated database runs exactly those
    with connection.cursor() as cursor:
        cursor.execute("SELECT proname, prosrc FROM pg_proc WHERE proname = ANY(%s)", [list(defined)])
        installed = dict(cursor.fetchall())
    assert installed == defined
