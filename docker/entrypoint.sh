#!/bin/sh
# Entrypoint of every CLAW.AI container.
#
#   entrypoint.sh --setup CMD ...   the web role: wait for PostgreSQL, migrate, make sure the
#                                   admin account and the periodic jobs exist, then exec CMD
#   entrypoint.sh CMD ...           every other role: exec CMD (compose starts them once web
#                                   is healthy, so the schema is in place)
set -eu

# Without a choice, the image runs production settings, which refuse to start on defaults.
: "${DJANGO_SETTINGS_MODULE:=claw_ai.settings.production}"
export DJANGO_SETTINGS_MODULE

wait_for_postgres() {
    python - <<'PY'
import time

import django
from django.db import connection
from django.db.utils import OperationalError

django.setup()
deadline = time.monotonic() + 60
while True:
    try:
        connection.ensure_connection()
        break
    except OperationalError as error:
        if time.monotonic() > deadline:
            raise SystemExit(f"PostgreSQL did not answer within 60 s: {error}")
        print("waiting for PostgreSQL ...", flush=True)
        time.sleep(1)
PY
}

if [ "${1:-}" = "--setup" ]; then
    shift
    wait_for_postgres
    python manage.py migrate --noinput
    python manage.py ensure_admin
    python manage.py setup_periodic_tasks
fi

exec "$@"
