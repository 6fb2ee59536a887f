"""Where the overhead goes: database work per trivial task, system vs baseline.

    python -m bench.db_profile 200

Runs N tasks of each kind through a worker and reads PostgreSQL's own counters for the
database (pg_stat_database) before and after: transactions committed and rows read,
inserted and updated, divided by N. Nothing else should use the database meanwhile.
"""

from __future__ import annotations

import os
import sys
import time

import psycopg

from bench.processes import Worker, run_tasks

COUNTERS = ("xact_commit", "tup_returned", "tup_fetched", "tup_inserted", "tup_updated")


def counters(url: str) -> dict[str, int]:
    with psycopg.connect(url, autocommit=True) as conn:
        # Backends flush their statistics at most once a second; give the last ones time to land.
        time.sleep(1.5)
        conn.execute("SELECT pg_stat_clear_snapshot()")
        row = conn.execute(
            f"SELECT {', '.join(COUNTERS)} FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()
    return dict(zip(COUNTERS, row, strict=True))


def profile(kind: str, tasks: int, url: str) -> dict[str, float]:
    with Worker(kind, concurrency=2):
        run_tasks(kind, 20)  # warm-up: connections open, code loaded
        before = counters(url)
        run_tasks(kind, tasks)
        after = counters(url)
    return {name: (after[name] - before[name]) / tasks for name in COUNTERS}


def main() -> None:
    tasks = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    url = os.environ["DATABASE_URL"].replace("postgres://", "postgresql://", 1)
    rows = {kind: profile(kind, tasks, url) for kind in ("system", "bare")}
    print(f"per task, {tasks} tasks (includes the load process's polling, alike for both):")
    print(f"{'counter':<14}{'system':>10}{'bare':>10}")
    for name in COUNTERS:
        print(f"{name:<14}{rows['system'][name]:>10.1f}{rows['bare'][name]:>10.1f}")


if __name__ == "__main__":
    main()
