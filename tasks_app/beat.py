"""The beat scheduler of the system: django-celery-beat's, sending only while it holds a lease.

django-celery-beat has no locking, so two beat processes (a second deploy, a scaled service, a
`make run` beside compose) would send every job twice. Here each beat process competes for one
lease in Redis (`SET NX PX`, renewed on every tick by its holder only, compare-and-set in Lua).
The holder sends; the others stand by, trying every second. When the holder dies, its lease
expires after BEAT_LEASE_SECONDS and a standby takes over, first re-reading the schedule from the
database (the holder saves each job's last run as it sends, so nothing due is sent twice and
nothing is skipped). A holder that stops cleanly gives the lease back at once.

A beat that starts while the lifeline or re-send job is disabled or deleted says so in its log:
without them tasks of a dead worker node, or lost by the broker, wait for ever.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import uuid

import redis
from django.conf import settings
from django_celery_beat.schedulers import DatabaseScheduler

logger = logging.getLogger(__name__)

LEASE_KEY = "claw:beat:lease"
# Renew if ours (1), take it if free (2), else 0; one round trip, atomic.
_HOLD = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return 2
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class BeatLease:
    """One holder at a time, for `seconds` after its last renewal."""

    def __init__(self, client: redis.Redis, *, seconds: float, key: str = LEASE_KEY) -> None:
        self.client = client
        self.key = key
        self.milliseconds = int(seconds * 1000)
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._hold = client.register_script(_HOLD)
        self._release = client.register_script(_RELEASE)

    def hold(self) -> bool:
        """Renew the lease, or take it if nobody holds it; True when this process holds it now."""
        return bool(self._hold(keys=[self.key], args=[self.holder, self.milliseconds]))

    def release(self) -> None:
        self._release(keys=[self.key], args=[self.holder])

    def holder_now(self) -> str | None:
        value = self.client.get(self.key)
        if not value:
            return None
        return value.decode() if isinstance(value, bytes) else value


def warn_about_disabled_safety_jobs() -> list[str]:
    from tasks_app.schedules import safety_jobs_off

    off = safety_jobs_off()
    for name in off:
        logger.warning(
            "beat: the periodic job %r is disabled or deleted: tasks of dead worker nodes or lost by the "
            "broker are not recovered without it. Enable it in the admin (Periodic tasks), or "
            "`manage.py setup_periodic_tasks --restore-deleted`.",
            name,
        )
    return off


class LeasedDatabaseScheduler(DatabaseScheduler):
    #: Seconds between attempts of a standby beat to take the lease.
    standby_interval = 1.0

    def __init__(self, *args, **kwargs) -> None:
        self.lease = BeatLease(redis.Redis.from_url(settings.REDIS_URL), seconds=settings.BEAT_LEASE_SECONDS)
        self._holding = False
        super().__init__(*args, **kwargs)
        # Tick (and so renew) well within the lease, and save each job's last run as it is sent,
        # so a beat taking over reads where this one stopped.
        self.max_interval: float = min(self.max_interval, settings.BEAT_LEASE_SECONDS / 3)
        self.sync_every_tasks = 1

    def setup_schedule(self) -> None:
        super().setup_schedule()
        warn_about_disabled_safety_jobs()

    def tick(self, *args, **kwargs) -> float:
        try:
            held = self.lease.hold()
        except redis.RedisError as error:
            # Without Redis no beat can know who holds the lease: send nothing rather than twice.
            logger.warning("beat: cannot reach Redis for the beat lease (%s); sending nothing until it answers", error)
            held = False
        if not held:
            if self._holding:
                logger.warning("beat: lost the lease to %s; standing by", self.lease.holder_now())
                self._holding = False
            return self.standby_interval
        if not self._holding:
            logger.info("beat: holds the lease (%s); sending the scheduled jobs", self.lease.holder)
            self._holding = True
            # Another beat may have sent jobs while this one stood by: read their last runs afresh.
            self._initial_read = True
            self._heap = None
        return super().tick(*args, **kwargs)

    def close(self) -> None:
        super().close()
        if self._holding:
            with contextlib.suppress(redis.RedisError):
                self.lease.release()  # a standby takes over at its next attempt, not after the lease
