"""After a fold, the dashboard's rollup equals the figures computed from the records and replies themselves."""

import importlib
import math
import random
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.utils import timezone

from conversations.models import Conversation, Message, MessageRole
from monitoring.dashboard import AI_TASK, CODE_TENANT, RANGES, figures
from monitoring.fold import LATENESS, fold_rollup
from monitoring.models import MetricRollup
from monitoring.rollup import percentiles, upper_bound
from tasks_app.models import TaskRecord, TaskState

pytestmark = pytest.mark.django_db

NAMES = (AI_TASK, "tasks_app.tasks.knowledge_tasks.index_document")
FINAL = (TaskState.SUCCESS, TaskState.FAILURE, TaskState.REVOKED)


def finished_record(task_id: str, *, name: str, state: str, done, runtime: float, wait: float, **fields) -> TaskRecord:
    """A record as the system writes one: published (INSERT), then finished (UPDATE)."""
    record = TaskRecord.objects.create(task_id=task_id, task_name=name, queue="default", **fields)
    started = done - timedelta(seconds=runtime)
    TaskRecord.objects.filter(pk=record.pk).update(
        state=state, created_at=started - timedelta(seconds=wait), started_at=started, done_at=done
    )
    return record


def seed_records(now, rng: random.Random) -> None:
    """Finished tasks over the last 8 days (some before the week), and some not finished, folded
    into the rollup (written in the past, they are outside a periodic fold's recent minutes)."""
    for i in range(400):
        finished_record(
            f"roll-{i}",
            name=NAMES[i % 2],
            state=rng.choices(FINAL, [80, 15, 5])[0],
            done=now - timedelta(seconds=rng.uniform(1, 3500) if i % 4 < 2 else rng.uniform(1, 8 * 86400)),
            runtime=rng.uniform(0.2, 8),
            wait=rng.uniform(0, 3),
        )
    for i in range(20):
        TaskRecord.objects.create(task_id=f"roll-open-{i}", task_name=NAMES[0], queue="default")
    fold_rollup(since=now - timedelta(days=9))


def assert_near_rank(estimate: float, values: list[float], quantile: float) -> None:
    """A percentile read from the histogram lies in the bucket of the value at its rank: within
    10% of that value (between the values ranked just below and above, where ranks fall between)."""
    ordered = sorted(values)
    rank = math.ceil(quantile * len(ordered))  # 1-based, as the histogram counts
    low, high = ordered[max(0, rank - 2)], ordered[min(len(ordered) - 1, rank)]
    assert low / 1.1 - 0.001 <= estimate <= high * 1.1 + 0.001, (estimate, low, high)


def expected_from_records(range_key: str, now) -> dict:
    """The dashboard's task figures computed from the records, as the dashboard did before the rollup."""
    range_ = RANGES[range_key]
    data = figures(range_, now=now)
    since, step = data["since"], range_.step
    finished = {state: [0.0] * len(data["times"]) for state in FINAL}
    runtimes, waits, replies = {}, {}, {}
    for record in TaskRecord.objects.filter(done_at__gte=since, done_at__lte=now, state__in=FINAL):
        index = int((record.done_at - since) / step)
        finished[record.state][index] += 1 / (step.total_seconds() / 60)
        if record.state != TaskState.REVOKED:
            runtimes.setdefault(record.task_name, []).append((record.done_at - record.started_at).total_seconds())
            waits.setdefault(record.task_name, []).append((record.started_at - record.created_at).total_seconds())
        if record.state == TaskState.SUCCESS and record.task_name == AI_TASK:
            replies.setdefault(index, []).append((record.done_at - record.created_at).total_seconds())
    return {"data": data, "finished": finished, "runtimes": runtimes, "waits": waits, "replies": replies}


@pytest.mark.parametrize("range_key", ["hour", "day", "week"])
def test_the_rollup_gives_the_figures_of_the_records(range_key):
    # given
    now = timezone.now()
    seed_records(now, random.Random(17))
    # when
    expected = expected_from_records(range_key, now)
    data = expected["data"]
    # then: counts exactly
    for state in FINAL:
        assert data["finished"][state] == pytest.approx(expected["finished"][state]), state
    assert sum(sum(values) for values in data["finished"].values()) > 0
    # and each percentile within 10% (a bucket's width) of the record values around its rank
    assert {name for name, *_ in data["by_name"]} == set(expected["runtimes"])
    for name, count, runtime, wait in data["by_name"]:
        assert count == len(expected["runtimes"][name])
        for quantile, value in zip((0.5, 0.95), runtime, strict=True):
            assert_near_rank(value, expected["runtimes"][name], quantile)
        for quantile, value in zip((0.5, 0.95), wait, strict=True):
            assert_near_rank(value, expected["waits"][name], quantile)
    for index, values in expected["replies"].items():
        for quantile, key in ((0.5, "p50"), (0.95, "p95")):
            assert_near_rank(data["reply_time"][key][index], values, quantile)


def test_a_refold_moves_a_changed_record_and_a_deleted_one_stays_counted():
    # given
    now = timezone.now()
    seed_records(now, random.Random(3))
    moved = TaskRecord.objects.filter(state=TaskState.SUCCESS, done_at__gte=now - timedelta(hours=1)).first()
    # when: a finished record is corrected (another state, done at another time), and its time refolded
    TaskRecord.objects.filter(pk=moved.pk).update(
        state=TaskState.FAILURE, done_at=now - timedelta(minutes=1), started_at=now - timedelta(minutes=2)
    )
    fold_rollup(since=now - timedelta(hours=1))
    # then: the rollup follows it
    expected = expected_from_records("hour", now)
    for state in FINAL:
        assert expected["data"]["finished"][state] == pytest.approx(expected["finished"][state]), state
    # and deleting records finished before a fold's recent minutes (the cleanup job deletes them
    # after days) leaves the charts as they were, through the periodic fold
    before = figures(RANGES["day"], now=now)
    deleted, _ = TaskRecord.objects.filter(
        done_at__gte=now - timedelta(hours=2), done_at__lt=now - 3 * LATENESS
    ).delete()
    assert deleted > 50
    fold_rollup()
    assert figures(RANGES["day"], now=now) == before


def rollup_rows() -> set[tuple]:
    return set(MetricRollup.objects.values_list("span", "bin", "figure", "name", "label", "tenant", "bucket", "value"))


def test_a_fold_writes_the_rollup_migration_0002_fills_and_its_triggers_kept(alice):
    # given: records and replies, folded
    now = timezone.now()
    seed_records(now, random.Random(5))
    conversation = Conversation.objects.create(public_id="conv_fill", user_id="u1", created_by=alice)
    Message.objects.create(
        conversation=conversation, role=MessageRole.ASSISTANT, content="r", model="m", cost=Decimal("0.5")
    )
    fold_rollup()
    folded = rollup_rows()
    kept = {key: figures(range_, now=now) for key, range_ in RANGES.items()}
    # when: the rollup is emptied and filled again as `migrate` filled it when it was trigger-kept
    MetricRollup.objects.all().delete()
    migration = importlib.import_module("monitoring.migrations.0002_metricrollup")
    with connection.cursor() as cursor:
        cursor.execute(migration.BACKFILL)
    # then: row for row the same
    assert rollup_rows() == folded
    assert {key: figures(range_, now=now) for key, range_ in RANGES.items()} == kept


def test_tokens_cost_and_the_busiest_users_by_tenant(alice, bob):
    # given: the same chat user id "u1" in two tenants, and a conversation made from code
    now = timezone.now()
    spent = {}
    for tenant, user, costs in (
        (alice, "u1", ["0.30", "0.20"]),
        (bob, "u1", ["0.40"]),
        (alice, "u2", ["0.05"]),
        (None, "u1", ["0.01"]),
    ):
        conversation = Conversation.objects.create(
            public_id=f"conv_{tenant.pk if tenant else 0}_{user}", user_id=user, created_by=tenant
        )
        Message.objects.create(conversation=conversation, role=MessageRole.USER, content="q")
        for cost in costs:
            Message.objects.create(
                conversation=conversation,
                role=MessageRole.ASSISTANT,
                content="a",
                model="gpt-4o-mini" if tenant == alice else "deepseek-chat",
                prompt_tokens=100,
                completion_tokens=20,
                cost=Decimal(cost),
            )
        spent[(tenant.username if tenant else CODE_TENANT, user)] = sum(map(Decimal, costs))
    # when: the periodic fold runs (or the dashboard folds before it draws)
    fold_rollup()
    data = figures(RANGES["hour"], now=now + timedelta(seconds=1))
    # then: two tenants' "u1" are two users, ranked by cost
    names = data["tenant_names"]
    assert [(names[tenant], user, cost) for tenant, user, cost in data["top_users"]] == [
        ("alice", "u1", Decimal("0.5")),
        ("bob", "u1", Decimal("0.4")),
        ("alice", "u2", Decimal("0.05")),
        (CODE_TENANT, "u1", Decimal("0.01")),
    ]
    # and tokens and cost per model are the ledger's
    totals = {}
    for _, model, tokens, cost in data["usage"]:
        totals.setdefault(model, [0, 0])
        totals[model][0] += tokens
        totals[model][1] += cost
    assert totals == {"gpt-4o-mini": [360, Decimal("0.55")], "deepseek-chat": [240, Decimal("0.41")]}
    # and a reply rewritten later (its cost corrected) is counted once, at its new cost
    Message.objects.filter(cost=Decimal("0.40")).update(cost=Decimal("0.10"))
    fold_rollup()
    data = figures(RANGES["hour"], now=now + timedelta(seconds=1))
    assert data["top_users"][1] == (bob.pk, "u1", Decimal("0.1"))


def test_percentiles_interpolate_inside_the_bucket_that_holds_the_rank():
    # given: 4 values in bucket 10, 6 in bucket 11
    counts = {10: 4, 11: 6}
    # when
    p50, p100 = percentiles(counts, (0.5, 1.0))
    # then: the 5th of 10 is the first of bucket 11's six
    assert p50 == pytest.approx(upper_bound(10) + (upper_bound(11) - upper_bound(10)) / 6)
    assert p100 == pytest.approx(upper_bound(11))
    assert percentiles({}, (0.5,)) == [None]
