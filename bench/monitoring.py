"""Issue 17's figures on the million-record table: one /metrics scrape, the admin dashboard.

    DATABASE_URL=<the big database> python -m bench.monitoring [runs]

Loads the table first if needed (bench.big_table), then times each page in-process through
Django's test client (no HTTP server: the server's own cost is the same for every page), warm,
as the median and the worst of `runs` requests. Targets: a scrape ≤ 100 ms, the dashboard ≤ 500 ms.
The bench table has task records but no messages, so the replies' token and cost queries find
nothing to join (their cost on a real table is the AI records of the range, by done_at).
"""

import json
import os
import statistics
import sys
import time

import django


def main(runs: int) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "claw_ai.settings.development")
    django.setup()
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Permission
    from django.test import Client
    from django.test.utils import override_settings

    from bench.big_table import load

    load(1_000_000)
    user, _ = get_user_model().objects.get_or_create(username="bench-monitoring", defaults={"is_staff": True})
    user.user_permissions.add(Permission.objects.get(codename="view_metrics", content_type__app_label="monitoring"))
    client = Client()
    client.force_login(user)
    pages = {"scrape /metrics": ("/metrics", {}, 100)}
    for key in ("hour", "day", "week"):
        pages[f"dashboard, {key}"] = ("/admin/monitoring/", {"range": key}, 500)
    figures = {}
    with override_settings(ALLOWED_HOSTS=["*"]):
        for label, (path, params, target) in pages.items():
            client.get(path, params)  # warm
            times = []
            for _ in range(runs):
                started = time.perf_counter()
                response = client.get(path, params)
                times.append((time.perf_counter() - started) * 1000)
                assert response.status_code == 200, response.status_code
            figures[label] = {
                "median_ms": round(statistics.median(times), 1),
                "max_ms": round(max(times), 1),
                "target_ms": target,
            }
            print(
                f"{label:<20} median {figures[label]['median_ms']:>7.1f} ms  worst {figures[label]['max_ms']:>7.1f} ms"
                f"  (target {target} ms)",
                file=sys.stderr,
            )
    print(json.dumps(figures))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20)
