# The one image of every CLAW.AI service (web, celery-worker, celery-beat, celery-flower).
# Compose picks the process with `command:`; docker/entrypoint.sh prepares the database first.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Runtime dependencies only (pinned); the test tools of requirements-dev.txt stay out of the image.
# OpenTelemetry tracing (monitoring/tracing.py) is optional: WITH_TRACING=1 at build time adds its
# pinned packages (compose passes WITH_TRACING from the environment or .env).
ARG WITH_TRACING=0
COPY requirements.txt requirements-tracing.txt ./
RUN pip install -r requirements.txt \
    && if [ "$WITH_TRACING" = "1" ]; then pip install -r requirements-tracing.txt; fi

COPY . .

# Static files are collected at build time with production settings (the manifest WhiteNoise
# serves). Nothing is connected to: the secrets and URLs are throwaway values for this step only
# (random, so they pass production's checks of secrets).
RUN DJANGO_SETTINGS_MODULE=claw_ai.settings.production \
    DJANGO_SECRET_KEY="$(python -c 'import secrets; print(secrets.token_urlsafe(64))')" \
    WEBHOOK_SIGNING_SECRET="$(python -c 'import secrets; print(secrets.token_urlsafe(32))')" \
    FLOWER_PASSWORD="$(python -c 'import secrets; print(secrets.token_urlsafe(16))')" \
    DATABASE_URL=postgres://build@localhost:5432/build \
    REDIS_URL=redis://localhost:6379/0 \
    python manage.py collectstatic --noinput

# The processes run as an unprivileged user that cannot write to the code.
RUN useradd --system --create-home --uid 10001 claw
USER claw

EXPOSE 8000 5555
ENTRYPOINT ["/app/docker/entrypoint.sh"]
CMD ["gunicorn", "claw_ai.asgi:application", "-k", "uvicorn_worker.UvicornWorker", "--bind", "0.0.0.0:8000"]
