"""Which AI replies go to the workers now, and which wait their turn in PostgreSQL.

Celery and Redis run a queue first-in first-out within a priority, so one chat user who sends
500 messages stands in front of everybody else's single message. Here a chat user (a tenant's
`user_id`) has at most AI_MAX_CONCURRENT_PER_USER replies admitted (in the broker or running) at
once, and a conversation one, in the order its questions were sent; the rest wait in
ReplyAdmission rows, their task records PENDING with "waiting: user_concurrency" (or
"waiting: conversation_order"). When one of the user's replies ends, however it ends (success,
failure, cancellation; a crashed worker's reply ends when its redelivered message has run), the
next ones are admitted: highest priority first, then oldest.

Each conversation's replies thus run one at a time in submission order, and a reply's prompt
holds exactly the turns before its question. Every decision for one chat user is taken under
one advisory lock, at submit and at the end of a reply. A reply counts as in hand until its task
record is finished, so a row whose end was never reported (a task cancelled before it ran) frees
its place at the next decision for that user, or at the periodic sweep.

The calls from outside are `admit_and_publish` (conversations.services.submit_ai_generation) and
`reply_ended` (the AI task's end, tasks_app.tasks.ai_tasks); publishing goes through
tasks_app.publishing.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from claw_ai.inserts import insert
from conversations import queries
from conversations.budgets import replies_at_once
from conversations.models import AdmissionState, ReplyAdmission
from tasks_app import publishing, records
from tasks_app.models import FINISHED_STATES, TaskRecord
from tasks_app.publishing import BrokerUnavailable

if TYPE_CHECKING:
    from collections.abc import Callable

    from django.contrib.auth.models import User

    from tasks_app.publishing import Prepared

logger = logging.getLogger(__name__)

# The pg_advisory_xact_lock class of admissions (one lock per chat user within it).
_LOCK_CLASS = 15_002
# An admitted reply whose record never appeared (its publish failed) stops counting after this.
_UNPUBLISHED_GRACE = timedelta(minutes=5)
USER_CONCURRENCY = "user_concurrency"
CONVERSATION_ORDER = "conversation_order"


@dataclass(frozen=True)
class WaitingRecord:
    """What a reply's task record holds, written here if the reply has to wait."""

    task_name: str
    kwargs: dict
    queue: str
    eta: datetime | None
    submitted_by: User | None


def admit_and_publish(
    *,
    task_id: str,
    tenant_id: int | None,
    user_id: str,
    conversation_id: str,
    priority: int | None,
    record: WaitingRecord,
    prepare: Callable[[], Prepared],
) -> tuple[str, TaskRecord]:
    """Take the reply in: ("", its record) when admitted and published, or (what it waits for, its
    record): "user_concurrency", "conversation_order".

    A waiting reply's task record is written here, PENDING and saying what it waits for, in the
    same transaction as the decision: whoever admits it later finds it and publishes it (the
    publish keeps the record: tasks_app.recording upserts by task id).

    `prepare` (tasks_app.publishing.prepare of the reply, under `task_id`) writes the admitted
    reply's record in the decision's transaction, so the two take one commit, not two (a commit
    waits for PostgreSQL's disk flush: bench/ANALYSIS.md, fourth round); the message leaves after
    it. Raises BrokerUnavailable when it cannot: the record is deleted and the place given back.
    """
    waiting_for, prepared, waiting = _admit(
        task_id=task_id,
        tenant_id=tenant_id,
        user_id=user_id,
        conversation_id=conversation_id,
        priority=priority,
        record=record,
        prepare=prepare,
    )
    if prepared is None:
        assert waiting is not None
        return waiting_for, waiting
    try:
        prepared.send()
    except BrokerUnavailable:
        reply_withdrawn(task_id=task_id)
        raise
    return "", prepared.record


def _admit(
    *,
    task_id: str,
    tenant_id: int | None,
    user_id: str,
    conversation_id: str,
    priority: int | None,
    record: WaitingRecord,
    prepare: Callable[[], Prepared],
) -> tuple[str, Prepared | None, TaskRecord | None]:
    """(what it waits for, None, its waiting record), or ("", its prepared publish, None)."""
    priority = settings.CELERY_TASK_DEFAULT_PRIORITY if priority is None else priority
    prepared = waiting = None

    def new_row(**state) -> ReplyAdmission:
        return insert(
            ReplyAdmission(
                task_id=task_id,
                tenant_id=tenant_id,
                user_id=user_id,
                conversation_id=conversation_id,
                priority=priority,
                **state,
            )
        )

    with transaction.atomic():
        _lock(tenant_id, user_id)
        if not queries.admissions_exist(tenant_id=tenant_id, user_id=user_id):
            # The chat user has no reply in hand (the usual case: one question at a time): nothing
            # waits before this one and every place is free, so it goes, as a full decision would
            # decide, without reading the user's limit.
            new_row(state=AdmissionState.ADMITTED, admitted_at=timezone.now())
            return "", prepare(), None
        limit = replies_at_once(tenant_id=tenant_id, user_id=user_id)
        waits = _waits_for_sure(tenant_id=tenant_id, user_id=user_id, conversation_id=conversation_id, limit=limit)
        row = new_row(state=AdmissionState.WAITING, waiting_for=waits)
        if waits:
            admitted, mine = [], None
        else:
            admitted = _admit_next(tenant_id=tenant_id, user_id=user_id, limit=limit)
            mine = next((other for other in admitted if other.pk == row.pk), None)
            if mine is None:
                row.refresh_from_db(fields=["waiting_for"])  # what the full decision noted
        if mine is None:
            waiting = records.insert_waiting(
                task_id=task_id,
                task_name=record.task_name,
                kwargs=record.kwargs,
                queue=record.queue,
                priority=priority,
                eta=record.eta,
                submitted_by_id=record.submitted_by.pk if record.submitted_by is not None else None,
                user_id=user_id,
                conversation_id=conversation_id,
                note=row.waiting_for,
            )
        else:
            prepared = prepare()
    # Others admitted by the same decision (their place came free meanwhile) are published too.
    _publish([other for other in admitted if other.pk != row.pk])
    return ("" if mine is not None else row.waiting_for), prepared, waiting


def reply_ended(*, task_id: str, tenant_id: int | None = None, user_id: str | None = None) -> None:
    """The reply of `task_id` ended: its place goes to the chat user's next waiting replies.

    `tenant_id` and `user_id` are the reply task's own (its kwargs, which its admission row was
    made from); without `user_id` they are looked up.
    """
    if user_id is None:
        row = ReplyAdmission.objects.filter(task_id=task_id).values("tenant_id", "user_id").first()
        if row is None:
            return  # sent from code, not through submit: never admitted here
        tenant_id, user_id = row["tenant_id"], row["user_id"]
    with transaction.atomic():
        _lock(tenant_id, user_id)
        if not queries.admissions_remove(task_ids=[task_id]):
            return  # sent from code, or its place was given back already
        admitted = _admit_next(tenant_id=tenant_id, user_id=user_id)
    _publish(admitted)


def reply_withdrawn(*, task_id: str) -> None:
    """The admitted reply of `task_id` could not be sent (broker unreachable): it takes no place."""
    ReplyAdmission.objects.filter(task_id=task_id).delete()


def sweep_waiting_replies() -> int:
    """Admit what can be admitted for every chat user with waiting replies (the periodic safety net)."""
    users = ReplyAdmission.objects.filter(state=AdmissionState.WAITING).values_list("tenant_id", "user_id").distinct()
    published = 0
    for tenant_id, user_id in list(users):
        with transaction.atomic():
            _lock(tenant_id, user_id)
            _admit_next(tenant_id=tenant_id, user_id=user_id)
        # Every admitted reply still waiting to be sent (a process that admitted it may have died
        # before sending it): _publish claims each record, so none is sent twice.
        admitted = ReplyAdmission.objects.filter(tenant_id=tenant_id, user_id=user_id, state=AdmissionState.ADMITTED)
        published += _publish(list(admitted))
    return published


def _waits_for_sure(*, tenant_id: int | None, user_id: str, conversation_id: str, limit: int) -> str:
    """Inside the user's lock, before a new reply's row is written: what it waits for when no
    decision could admit it, else "".

    The full decision (_admit_next) reads every row of the chat user: in a burst, with hundreds
    waiting, that is most of a submit's cost, and each further submit reads one row more. When the
    user's places are all held by replies still unfinished, no decision admits anyone, so the new
    reply waits, behind its conversation's earlier reply if it has one. (An admitted reply whose
    record never appeared still counts here until the next full decision drops it: at a reply's
    end, or the periodic sweep.)
    """
    if not limit:
        return ""
    admitted = queries.admitted_task_ids(tenant_id=tenant_id, user_id=user_id)
    if len(admitted) < limit:
        return ""
    states = records.states_among(admitted)
    if sum(states.get(task_id) not in FINISHED_STATES for task_id in admitted) < limit:
        return ""
    in_hand = queries.conversation_in_hand(tenant_id=tenant_id, user_id=user_id, conversation_id=conversation_id)
    return CONVERSATION_ORDER if in_hand else USER_CONCURRENCY


def _admit_next(*, tenant_id: int | None, user_id: str, limit: int | None = None) -> list[ReplyAdmission]:
    """Inside the user's lock: drop rows whose reply is over, admit what fits, note why the rest wait.

    `limit`: replies_at_once's answer, when the caller has it already."""
    now = timezone.now()
    rows = queries.admissions_of(tenant_id=tenant_id, user_id=user_id)
    states = records.states_among([row.task_id for row in rows]) if rows else {}
    gone = {
        row.task_id
        for row in rows
        if states.get(row.task_id) in FINISHED_STATES
        or (
            row.state == AdmissionState.ADMITTED
            and row.task_id not in states  # no record yet
            and row.admitted_at is not None  # always set on ADMITTED
            and row.admitted_at < now - _UNPUBLISHED_GRACE
        )
    }
    if gone:
        queries.admissions_remove(task_ids=list(gone))
    rows = [row for row in rows if row.task_id not in gone]
    admitted = [row for row in rows if row.state == AdmissionState.ADMITTED]
    busy = {row.conversation_id for row in admitted}
    if limit is None:
        limit = replies_at_once(tenant_id=tenant_id, user_id=user_id)
    limit = limit or len(rows)  # 0: no limit per user
    room = max(0, limit - len(admitted))
    # Only the oldest waiting reply of each conversation may go (submission order).
    heads: dict[str, int] = {}
    for row in rows:
        if row.state == AdmissionState.WAITING:
            heads.setdefault(row.conversation_id, row.pk)
    waiting = sorted((row for row in rows if row.state == AdmissionState.WAITING), key=lambda r: (-r.priority, r.pk))
    before = {row.pk: (row.state, row.waiting_for) for row in waiting}
    newly: list[ReplyAdmission] = []
    for row in waiting:
        if row.conversation_id in busy or heads[row.conversation_id] != row.pk:
            row.waiting_for = CONVERSATION_ORDER
        elif room == 0:
            row.waiting_for = USER_CONCURRENCY
        else:
            row.state, row.admitted_at, row.waiting_for = AdmissionState.ADMITTED, now, ""
            busy.add(row.conversation_id)
            room -= 1
            newly.append(row)
    # Written only where the decision changed: a burst of hundreds must not rewrite them all each time.
    for row in waiting:
        if before[row.pk] != (row.state, row.waiting_for):
            queries.admission_decided(row)
    return newly


def _publish(rows: list[ReplyAdmission]) -> int:
    """Send admitted replies whose record waits here (a reply admitted at submit is sent by its caller).

    Sent first, the waiting note cleared after: a process that dies in between leaves the note,
    and the sweep sends the reply again (a reply runs once per task id however often it is sent),
    where clearing first would leave a reply nobody sends.
    """
    published = 0
    for row in rows:
        record = records.waiting_record(task_id=row.task_id)
        if record is None:
            continue  # sent already, or not written yet (the submit that admitted it sends it)
        try:
            publishing.publish(
                task_name=record.task_name,
                kwargs=record.kwargs,
                queue=record.queue,
                priority=record.priority,
                eta=record.eta if record.eta and record.eta > timezone.now() else None,
                submitted_by_id=record.submitted_by_id,  # the id: no query for the user
                task_id=record.task_id,
            )
        except BrokerUnavailable:
            # publish deleted the record (it claims nothing is queued): put it back, still
            # waiting, for the periodic sweep to send once the broker answers.
            record.pk, record._state.adding = None, True
            record.save(force_insert=True)
            logger.warning("admitted reply %s could not be sent; the periodic sweep will send it", row.task_id)
            continue
        # The note only (the task may have started, even finished, meanwhile: its state stays).
        records.clear_waiting_note(pk=record.pk, note=record.error)
        published += 1
    return published


def _lock(tenant_id: int | None, user_id: str) -> None:
    key = int.from_bytes(hashlib.blake2b(f"{tenant_id}:{user_id}".encode(), digest_size=4).digest(), "big", signed=True)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [_LOCK_CLASS, key])
