"""Worker heartbeats in Redis: a dead worker's messages are handed back in seconds, not hours.

With late acknowledgement on Redis, a message a worker took waits in kombu's `unacked` hash until
the worker acknowledges it; if the worker's node dies, Redis gives it out again only after the
visibility timeout (a week here, so delayed tasks are not delivered twice). Sidekiq Pro's
super_fetch recovers a dead process's jobs when it starts again; RabbitMQ when the consumer's
connection drops. Here, while the broker is Redis:

- every worker writes a heartbeat key every WORKER_HEARTBEAT_SECONDS that expires after
  WORKER_HEARTBEAT_TTL_SECONDS, and files the delivery tag of each message it takes under its
  name (claw_ai.broker, in the same transaction as kombu's own bookkeeping);
- every worker checks its peers at each beat: when a peer's heartbeat has lapsed, one live worker
  (a lock decides) restores each message the peer held to the front of its queue;
- a worker that starts under a name that still holds messages (a restart after a crash) restores
  them before it consumes anything.

The heartbeat is written by a thread of the worker's main process, which runs no task code, so a
busy worker or a long task keeps it alive; only a process stalled longer than the TTL (SIGSTOP, a
frozen VM) is taken for dead. Its tasks then run elsewhere too, which tasks tolerate (they are
safe to run twice), and the worker logs that it was presumed dead when it resumes.

The BRPOP window: kombu takes a message off its queue (BRPOP) and then, in a second command,
writes it to the `unacked` hash. A worker killed between the two (a fraction of a millisecond per
message) takes the message with it. Redis has no blocking pop over many lists that moves the
message atomically (BLMOVE reads one list; kombu reads one per queue and priority), so this window
is closed from the other side: after handing back a dead worker's messages, the rescuing worker
re-sends, from their records, the tasks of the dead worker's queues that are PENDING, older than
the heartbeat TTL, and in neither a queue nor the unacknowledged hash (the stuck-task job's test,
without asking every worker). See the README's reliability section.

After a lost broker connection the worker consumes on a new one; what it held on the old one
(delayed tasks waiting for their eta, tasks Celery cancelled) stays in the `unacked` hash, and the
restore kombu attempts on the dead connection fails. The heartbeat thread notices the new
connection and hands back each message taken before it that no task of this process still runs.

The watchdog: a worker with free slots that has not asked Redis for a message for
WORKER_STUCK_AFTER_SECONDS while Redis answers is stuck; it hands back what it holds and exits, so
its supervisor starts a fresh one.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import threading
import time
from datetime import timedelta

from celery import signals
from django.conf import settings
from django.db import close_old_connections
from django.db.models import F, Q
from django.utils import timezone

from claw_ai import broker
from claw_ai.celery import celery_app
from tasks_app.models import TaskRecord, TaskState

logger = logging.getLogger(__name__)

ALIVE_KEY_PREFIX = "claw:worker:alive:"
# Hash: worker name -> {"queues": [...], "host": ...} of every worker that beats (or did, until rescued).
WORKERS_KEY = "claw:workers"
RESCUE_LOCK_PREFIX = "claw:worker:rescuing:"


def alive_key(worker: str) -> str:
    return f"{ALIVE_KEY_PREFIX}{worker}"


def broker_is_redis() -> bool:
    return celery_app.conf.broker_url.startswith(("redis://", "rediss://"))


# --- handing messages back ------------------------------------------------------------------------
def hand_back_held_messages(channel, worker: str) -> list[str]:
    """Restore every message `worker` holds unacknowledged to the front of its queue; their task ids."""
    client = channel.client
    task_ids = []
    tags = client.smembers(broker.held_key(worker))
    for tag in tags:
        raw = client.hget(channel.unacked_key, tag)
        if raw is not None:
            task_id = (json.loads(raw)[0].get("headers") or {}).get("id")
            if task_id:
                task_ids.append(task_id)
        channel.qos.restore_by_tag(tag, client)  # a tag acknowledged meanwhile is only dropped
    if tags:
        # Only these: a worker wrongly taken for dead may have filed new ones meanwhile.
        client.srem(broker.held_key(worker), *tags)
    return task_ids


def resend_tasks_taken_by(channel, queues: list[str], *, pending_for: timedelta, limit: int = 100) -> list[str]:
    """Re-send PENDING tasks of `queues` older than `pending_for` whose message is nowhere in Redis.

    What a worker killed inside the BRPOP window took with it: off its queue, never written to the
    unacknowledged hash. Such a task never started, so its record is PENDING.
    """
    from tasks_app.maintenance import BrokerView, _resend

    cutoff = timezone.now() - pending_for
    candidates = list(
        TaskRecord.objects.filter(state=TaskState.PENDING, queue__in=queues, created_at__lt=cutoff)
        .filter(Q(eta__isnull=True) | Q(eta__lt=cutoff))
        .filter(Q(resent_at__isnull=True) | Q(resent_at__lt=cutoff))
        .order_by("created_at", "id")[:limit]
    )
    view = BrokerView(channel)
    return [
        record.task_id
        for record in candidates
        if view.holds(record.task_id, record.queue) is False and _resend(record, cutoff)
    ]


def rescue_dead_worker(channel, worker: str, info: dict, *, rescuer: str) -> list[str]:
    """Hand back what a worker whose heartbeat lapsed held, and re-send what it took with it."""
    client = channel.client
    # One rescuer per dead worker; the lock outlives the rescue so a second one finds nothing to do.
    if not client.set(f"{RESCUE_LOCK_PREFIX}{worker}", rescuer, nx=True, ex=60):
        return []
    handed_back = hand_back_held_messages(channel, worker)
    client.hdel(WORKERS_KEY, worker)
    if handed_back:
        TaskRecord.objects.filter(task_id__in=handed_back).update(
            resent_count=F("resent_count") + 1, resent_at=timezone.now()
        )
    resent = resend_tasks_taken_by(
        channel,
        info.get("queues") or list(settings.TASK_QUEUES),
        pending_for=timedelta(seconds=settings.WORKER_HEARTBEAT_TTL_SECONDS),
    )
    logger.warning(
        "worker %s stopped beating (dead for %s s or more): handed back %d message(s) it held%s%s",
        worker,
        settings.WORKER_HEARTBEAT_TTL_SECONDS,
        len(handed_back),
        f" ({', '.join(handed_back)})" if handed_back else "",
        f"; re-sent {len(resent)} task(s) it had taken off the queue ({', '.join(resent)})" if resent else "",
    )
    return handed_back + resent


# --- the heartbeat ----------------------------------------------------------------------------------
class Heartbeat(threading.Thread):
    """The thread of a worker's main process that beats and watches consumption; its rescuer thread
    hands back dead peers' messages and what a lost connection held."""

    def __init__(self, worker: str, queues: list[str]) -> None:
        super().__init__(name="claw-heartbeat", daemon=True)
        self.worker = worker
        self.info = json.dumps({"queues": queues, "host": socket.gethostname(), "pid": os.getpid()})
        self.stopping = threading.Event()
        # Each thread its own kombu connection (a channel is not thread-safe).
        self.local = threading.local()
        self.beaten_once = False
        self.consuming_since: float | None = None  # of the consuming channel last seen

    # Redis through kombu's channel: restore_by_tag needs its queue and priority layout.
    def channel(self):
        if getattr(self.local, "connection", None) is None:
            self.local.connection = celery_app.connection_for_write()
        return self.local.connection.default_channel

    def reset(self) -> None:
        connection = getattr(self.local, "connection", None)
        if connection is not None:
            try:
                connection.release()
            except Exception:
                logger.debug("heartbeat: closing a broken connection failed", exc_info=True)
        self.local.connection = None

    def beat(self) -> None:
        client = self.channel().client
        ttl_ms = int(settings.WORKER_HEARTBEAT_TTL_SECONDS * 1000)
        pipe = client.pipeline()
        pipe.set(alive_key(self.worker), self.info, px=ttl_ms, get=True).hset(WORKERS_KEY, self.worker, self.info)
        previous = pipe.execute()[0]
        if previous is None and self.beaten_once:
            logger.error(
                "worker %s: its heartbeat had lapsed (was the process paused for over %s s?); other workers may "
                "have been handed its messages, so tasks running here may run twice",
                self.worker,
                settings.WORKER_HEARTBEAT_TTL_SECONDS,
            )
        self.beaten_once = True

    def rescue_dead_peers(self) -> None:
        channel = self.channel()
        client = channel.client
        workers = client.hgetall(WORKERS_KEY)
        if not workers:
            return
        names = [name.decode() for name in workers]
        pipe = client.pipeline()
        for name in names:
            pipe.exists(alive_key(name))
        for name, alive in zip(names, pipe.execute(), strict=True):
            if alive or name == self.worker:
                continue
            try:
                rescue_dead_worker(channel, name, json.loads(workers[name.encode()]), rescuer=self.worker)
            finally:
                close_old_connections()

    def reclaim_after_reconnect(self) -> None:
        """On a new consuming connection, hand back what the old one held and nothing here still runs."""
        channels = [channel for channel in list(broker.consuming_channels) if channel.consuming_since]
        if not channels:
            return
        latest = max(channels, key=lambda channel: channel.consuming_since)
        if self.consuming_since is None or latest.consuming_since == self.consuming_since:
            self.consuming_since = latest.consuming_since
            return
        self.consuming_since = latest.consuming_since
        from celery.worker import state

        running = {
            request.message.delivery_tag
            for request in list(state.active_requests)
            if getattr(request, "message", None) is not None
        }
        channel = self.channel()
        client = channel.client
        taken_before = {
            tag
            for tag in client.smembers(broker.held_key(self.worker))
            if (client.zscore(channel.unacked_index_key, tag) or 0) < latest.consuming_since
        }
        handed_back = []
        for tag in taken_before - {str(tag).encode() for tag in running}:
            raw = client.hget(channel.unacked_key, tag)
            if raw is not None:
                handed_back.append((json.loads(raw)[0].get("headers") or {}).get("id"))
            channel.qos.restore_by_tag(tag, client)
            client.srem(broker.held_key(self.worker), tag)
        if handed_back:
            logger.warning(
                "worker %s reconnected to the broker: handed back %d message(s) taken on the lost connection: %s",
                self.worker,
                len(handed_back),
                ", ".join(filter(None, handed_back)),
            )

    def stuck(self) -> bool:
        """Free slots, Redis answering, and no fetch for WORKER_STUCK_AFTER_SECONDS."""
        channels = [channel for channel in list(broker.consuming_channels) if channel.last_fetch_at is not None]
        if not channels:
            return False
        latest = max(channels, key=lambda channel: channel.last_fetch_at)
        idle_for = time.monotonic() - latest.last_fetch_at
        return idle_for > settings.WORKER_STUCK_AFTER_SECONDS and latest.qos.can_consume()

    def exit_stuck(self) -> None:
        logger.critical(
            "worker %s has free slots but has not asked the broker for a message in %s s while Redis answers: "
            "it is stuck; handing back its messages and exiting so that its supervisor starts it again",
            self.worker,
            settings.WORKER_STUCK_AFTER_SECONDS,
        )
        try:
            hand_back_held_messages(self.channel(), self.worker)
        finally:
            os.kill(os.getpid(), signal.SIGQUIT)  # cold shutdown: running tasks were handed back
            self.stopping.wait(15)
            os._exit(1)

    def run(self) -> None:
        # Rescues run in a thread of their own: they use the database (records, re-sends), whose pool
        # a busy threads worker may hold for long; the beat itself must never wait on it, or a live
        # worker would be taken for dead (a soak under heavy load showed it).
        threading.Thread(target=self.rescue_loop, name="claw-rescuer", daemon=True).start()
        while not self.stopping.wait(settings.WORKER_HEARTBEAT_SECONDS):
            try:
                self.beat()
                if self.stuck():
                    self.exit_stuck()
            except Exception as error:  # noqa: BLE001 (Redis away: keep trying; kombu reconnects the consumer)
                logger.warning("heartbeat of %s failed (%r); retrying", self.worker, error)
                self.reset()

    def rescue_loop(self) -> None:
        while not self.stopping.wait(settings.WORKER_HEARTBEAT_SECONDS):
            try:
                self.rescue_dead_peers()
                self.reclaim_after_reconnect()
            except Exception as error:  # noqa: BLE001 (Redis or PostgreSQL away: try again at the next beat)
                logger.warning("rescue check of %s failed (%r); retrying", self.worker, error)
                self.reset()
        self.reset()

    def stop(self) -> None:
        self.stopping.set()
        if self.is_alive():
            self.join(5)
        try:
            client = self.channel().client
            # Anything still held (kombu restores at shutdown what it can) is left for a peer to rescue.
            if not client.scard(broker.held_key(self.worker)):
                client.pipeline().delete(alive_key(self.worker)).hdel(WORKERS_KEY, self.worker).execute()
        except Exception:
            logger.debug("heartbeat: could not clear the heartbeat of %s", self.worker, exc_info=True)
        self.reset()


_heartbeat: Heartbeat | None = None


@signals.celeryd_after_setup.connect(dispatch_uid="tasks_app.liveness.start")
def start_heartbeat(sender=None, instance=None, **_kwargs) -> None:
    """In a worker, before it consumes: file taken messages under its name, recover a previous life's."""
    global _heartbeat  # noqa: PLW0603 (one heartbeat per worker process)
    if not broker_is_redis() or sender is None:
        return
    worker = str(sender)
    queues = sorted(instance.app.amqp.queues.consume_from) if instance is not None else list(settings.TASK_QUEUES)
    heartbeat = Heartbeat(worker, queues)
    try:
        heartbeat.beat()
        # Messages filed under this name now belong to an earlier process of the same name (this one
        # has taken none yet): a crash and restart (make run's worker1@host) recovers them at once.
        recovered = hand_back_held_messages(heartbeat.channel(), worker)
        if recovered:
            logger.warning("worker %s: handed back %d message(s) its previous process held", worker, len(recovered))
    except Exception:
        logger.warning("heartbeat of %s: Redis did not answer at start", worker, exc_info=True)
        heartbeat.reset()
    broker.holder = worker
    heartbeat.start()
    _heartbeat = heartbeat


@signals.worker_shutdown.connect(dispatch_uid="tasks_app.liveness.stop")
def stop_heartbeat(**_kwargs) -> None:
    global _heartbeat  # noqa: PLW0603 (one heartbeat per worker process)
    if _heartbeat is not None:
        _heartbeat.stop()
        _heartbeat = None
