"""Inspect and control the live Celery workers over remote control (Redis pidbox).

A remote-control call waits its whole timeout for replies, and a busy or hung
worker simply does not answer. So the inspections run in parallel threads with
one short timeout, and the answer names the workers that did not reply: those
that answered some calls but not all, and those seen recently that answered none.

/status and /stats need the live workers and their queues too, but must never wait for
them: they read the last discovery from the cache, and when it is older than
WORKER_DISCOVERY_CACHE_SECONDS one request (per cluster, by a lock in the cache) starts
a refresh in a background thread and answers with the stale value and its age.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.cache import cache

from claw_ai.celery import celery_app
from tasks_app import worker_audit
from tasks_app.models import WorkerControlEvent

logger = logging.getLogger(__name__)

# Workers seen in the last ten minutes: a silent one among them is reported as not replying.
SEEN_KEY = "tasks_app:workers:seen"
SEEN_FOR = 600
# The last discovery of live workers: {"queues": {worker: [queue, ...]}, "at": epoch seconds}.
DISCOVERY_KEY = "tasks_app:workers:discovery"
# Held while one process refreshes the discovery, so a stale value starts one refresh, not one per request.
DISCOVERY_LOCK_KEY = "tasks_app:workers:discovery:refreshing"
# A discovery is kept (and served, with its age) this long after it was made.
DISCOVERY_KEPT_FOR = 600

PREFORK = "prefork"


class NoWorkerReplied(Exception):
    """None of the addressed workers answered."""


@dataclass
class WorkerReport:
    workers: list[dict[str, Any]]
    not_replying: list[str]


@dataclass
class ControlReport:
    results: list[dict[str, Any]] = field(default_factory=list)
    not_replying: list[str] = field(default_factory=list)

    @property
    def any_ok(self) -> bool:
        return any(result["ok"] for result in self.results)


def _timeout() -> float:
    return settings.WORKER_INSPECT_TIMEOUT


def _inspect(method: str, destination: list[str] | None, timeout: float) -> dict[str, Any]:
    inspector = celery_app.control.inspect(destination=destination, timeout=timeout)
    return getattr(inspector, method)() or {}


def _inspect_all(methods: list[str], destination: list[str] | None) -> dict[str, dict[str, Any]]:
    """Run inspect calls in parallel; the whole takes one timeout, not one per call."""
    timeout = _timeout()
    with ThreadPoolExecutor(max_workers=len(methods)) as pool:
        futures = {method: pool.submit(_inspect, method, destination, timeout) for method in methods}
        return {method: future.result() for method, future in futures.items()}


def _remember(names: set[str]) -> set[str]:
    """Note the workers that replied; return the ones seen recently (including these)."""
    now = time.time()
    seen = {name: at for name, at in (cache.get(SEEN_KEY) or {}).items() if now - at < SEEN_FOR}
    seen.update(dict.fromkeys(names, now))
    cache.set(SEEN_KEY, seen, SEEN_FOR)
    return set(seen)


def _forget(names: set[str]) -> None:
    seen = cache.get(SEEN_KEY) or {}
    cache.set(SEEN_KEY, {name: at for name, at in seen.items() if name not in names}, SEEN_FOR)


def pool_type(stats: dict[str, Any]) -> str:
    """'prefork', 'threads', 'solo', 'gevent', 'eventlet' from a worker's stats reply."""
    implementation = (stats.get("pool") or {}).get("implementation", "")
    module = implementation.split(":")[0].rsplit(".", 1)[-1]
    return {"thread": "threads"}.get(module, module) or "unknown"


def _processed(stats: dict[str, Any]) -> dict[str, int]:
    return {name: int(count) for name, count in (stats.get("total") or {}).items()}


def _task_summary(request: dict[str, Any]) -> dict[str, Any]:
    return {"task_id": request.get("id"), "task_name": request.get("name"), "started": request.get("time_start")}


def inspect_workers(*, destination: list[str] | None = None) -> WorkerReport:
    """Each live worker: name, pool, concurrency, queues, active/reserved tasks, processed counts, uptime."""
    replies = _inspect_all(["stats", "active_queues", "active", "reserved"], destination)
    stats, queues, active, reserved = (replies[m] for m in ("stats", "active_queues", "active", "reserved"))
    replied = set(stats) | set(queues) | set(active) | set(reserved)
    expected = set(destination) if destination else _remember(replied)
    workers: list[dict[str, Any]] = []
    for name in sorted(replied):
        worker_stats = stats.get(name) or {}
        processed = _processed(worker_stats)
        workers.append(
            {
                "name": name,
                "pool": pool_type(worker_stats) if worker_stats else None,
                "concurrency": (worker_stats.get("pool") or {}).get("max-concurrency"),
                "queues": sorted(q["name"] for q in queues.get(name) or []) if name in queues else None,
                "active": [_task_summary(r) for r in active.get(name) or []] if name in active else None,
                "reserved": [_task_summary(r) for r in reserved.get(name) or []] if name in reserved else None,
                "processed": processed,
                "processed_total": sum(processed.values()),
                "uptime": worker_stats.get("uptime"),
                "complete": all(name in reply for reply in replies.values()),
            }
        )
    if queues and not destination:
        _store_discovery({name: [q["name"] for q in qs or []] for name, qs in queues.items()})
    partial = {w["name"] for w in workers if not w["complete"]}
    return WorkerReport(workers=workers, not_replying=sorted((expected - replied) | partial))


def _cache_seconds() -> int:
    return settings.WORKER_DISCOVERY_CACHE_SECONDS


@dataclass(frozen=True)
class Discovery:
    """Live workers and the queues each consumes, as discovered at `checked_at` (epoch seconds).

    `checked_at` is None before the first discovery: then nothing is known about the workers.
    """

    queues: dict[str, list[str]]
    checked_at: float | None

    @property
    def known(self) -> bool:
        return self.checked_at is not None

    @property
    def age(self) -> float | None:
        return None if self.checked_at is None else max(0.0, time.time() - self.checked_at)


def _store_discovery(queues: dict[str, list[str]]) -> None:
    cache.set(DISCOVERY_KEY, {"queues": queues, "at": time.time()}, DISCOVERY_KEPT_FOR)


def live_workers(*, wait_when_unknown: bool = False) -> Discovery:
    """The last discovery of live workers, at once: never waits for remote control.

    When the discovery is missing or older than WORKER_DISCOVERY_CACHE_SECONDS, a refresh starts
    in the background (unless another process is already refreshing) and this call answers with
    what is cached; callers show its age. With `wait_when_unknown` (/stats), a missing discovery
    (the first request after a start, or none for DISCOVERY_KEPT_FOR) is made now, within
    WORKER_INSPECT_TIMEOUT: "null workers" while workers are up reads as "no workers".
    """
    cached = cache.get(DISCOVERY_KEY)
    if cached is None or time.time() - cached["at"] >= _cache_seconds():
        _refresh_in_background()
    if cached is None and wait_when_unknown:
        # Wait for the refresh (this process's or another's), never longer than it can take: with
        # the broker down it does not come, and the answer stays "unknown".
        deadline = time.monotonic() + _timeout() + 1
        while cached is None and time.monotonic() < deadline:
            time.sleep(0.05)
            cached = cache.get(DISCOVERY_KEY)
    if cached is None:
        return Discovery(queues={}, checked_at=None)
    return Discovery(queues=cached["queues"], checked_at=cached["at"])


def _refresh_in_background() -> None:
    # The lock expires by itself, so a refresher that dies never blocks the next one for long.
    if cache.add(DISCOVERY_LOCK_KEY, value=True, timeout=int(_timeout()) + 10):
        threading.Thread(target=_refresh_and_unlock, name="worker-discovery", daemon=True).start()


def _refresh_and_unlock() -> None:
    try:
        refresh_live_workers()
    except Exception:  # a background thread has no caller to report to: log it, the next request retries
        logger.exception("discovering the live workers failed")
    finally:
        cache.delete(DISCOVERY_LOCK_KEY)


def refresh_live_workers() -> Discovery:
    """Ask every worker for its queues (waits WORKER_INSPECT_TIMEOUT) and cache the answer."""
    replies = _inspect("active_queues", None, _timeout())
    discovered = {name: [q["name"] for q in qs or []] for name, qs in replies.items()}
    _store_discovery(discovered)
    _remember(set(discovered))
    return Discovery(queues=discovered, checked_at=time.time())


def _audited(action: str, requested_by, destination: list[str] | None, report: ControlReport) -> ControlReport:
    WorkerControlEvent.objects.create(
        action=action,
        requested_by=requested_by,
        username=requested_by.get_username(),
        destination=destination,
        outcome={"results": report.results, "not_replying": report.not_replying},
    )
    logger.warning("worker control: %s of %s requested by %s", action, destination or "all", requested_by)
    return report


def restart_pools(*, destination: list[str] | None = None, requested_by) -> ControlReport:
    """Restart the process pool of each addressed worker that can (prefork with worker_pool_restarts).

    Celery's threads and solo pools answer "reload started" to pool_restart and do nothing,
    so the pool type is read from each worker's stats first and such workers are refused.
    The request is logged with who made it (WorkerControlEvent, and each worker's own log).
    """
    replies = _inspect_all(["stats", "conf"], destination)
    stats, conf = replies["stats"], replies["conf"]
    replied = set(stats)
    expected = set(destination) if destination else _remember(replied)
    report = ControlReport(not_replying=sorted(expected - replied))
    able = []
    for name in sorted(replied):
        pool = pool_type(stats[name])
        worker_conf = conf.get(name) or {}
        if pool != PREFORK:
            report.results.append({"worker": name, "ok": False, "message": f"the {pool} pool cannot be restarted"})
        elif worker_conf and not _restarts_enabled(worker_conf):
            report.results.append({"worker": name, "ok": False, "message": "worker_pool_restarts is off"})
        else:
            able.append(name)
    if able:
        worker_audit.announce(action="pool_restart", username=requested_by.get_username(), destination=able)
        answers = celery_app.control.pool_restart(destination=able, reply=True, timeout=_timeout()) or []
        answered = {}
        for answer in answers:
            answered.update(answer)
        for name in able:
            reply = answered.get(name)
            if reply is None:
                report.not_replying.append(name)
            elif "ok" in reply:
                report.results.append({"worker": name, "ok": True, "message": str(reply["ok"])})
            else:
                report.results.append({"worker": name, "ok": False, "message": str(reply.get("error", reply))})
    if not report.results:
        raise NoWorkerReplied(", ".join(report.not_replying))
    report.results.sort(key=lambda result: result["worker"])
    return _audited("pool_restart", requested_by, destination, report)


def _restarts_enabled(worker_conf: dict[str, Any]) -> bool:
    # The conf reply uses the names the app was configured with (CELERY_ namespace or plain).
    return bool(worker_conf.get("CELERY_WORKER_POOL_RESTARTS", worker_conf.get("worker_pool_restarts")))


def shutdown_workers(*, destination: list[str] | None, requested_by) -> ControlReport:
    """Warm-shut down the addressed workers (all when destination is None).

    Celery's shutdown command exits without replying, so the workers are pinged first:
    the ones that answer are asked to shut down, the others are named as not replying.
    The request is logged with who made it (WorkerControlEvent, and each worker's own log).
    """
    timeout = _timeout()
    answers = celery_app.control.ping(destination=destination, timeout=timeout) or []
    alive = sorted(name for answer in answers for name in answer)
    expected = set(destination) if destination else _remember(set(alive))
    report = ControlReport(not_replying=sorted(expected - set(alive)))
    if not alive:
        raise NoWorkerReplied(", ".join(report.not_replying))
    worker_audit.announce(action="shutdown", username=requested_by.get_username(), destination=alive)
    celery_app.control.shutdown(destination=alive)
    report.results = [{"worker": name, "ok": True, "message": "shutdown requested"} for name in alive]
    _forget(set(alive))
    cached = cache.get(DISCOVERY_KEY)
    if cached is not None:
        # Workers asked to shut down stop consuming at once; the discovery's time stays as it was.
        queues = {name: qs for name, qs in cached["queues"].items() if name not in alive}
        cache.set(DISCOVERY_KEY, {**cached, "queues": queues}, DISCOVERY_KEPT_FOR)
    return _audited("shutdown", requested_by, destination, report)
