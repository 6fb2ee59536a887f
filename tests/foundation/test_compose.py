"""The container files, checked without a Docker engine (none is needed to read them).

docker-compose.yml (development) and docker-compose.prod.yml (production) must carry the
seed's service names and make every command of the seed's first section work as written.
Where a compose client is installed, `compose config` validates the files as well.
"""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from django.conf import settings
from django.core.management import get_commands

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILES = ["docker-compose.yml", "docker-compose.prod.yml"]
SEED_SERVICES = {"web", "postgres", "redis", "celery-worker", "celery-beat", "celery-flower"}
APP_SERVICES = {"web", "celery-worker", "celery-worker-background", "celery-beat", "celery-flower"}
# Beyond the seed's, run by default: the prefork worker of the time-limited queues.
DEFAULT_EXTRA_SERVICES = {"celery-worker-background"}
# Development only, under the compose profile "monitoring" (deploy/monitoring/ provisions them).
MONITORING_SERVICES = {"prometheus", "grafana"}
# Optional everywhere, under a profile.
OPTIONAL_SERVICES = MONITORING_SERVICES | {"rabbitmq"}
WORKER_SERVICES = {"celery-worker": "worker@%h", "celery-worker-background": "background@%h"}
# Compose interpolation: ${NAME}, ${NAME:-default}, ${NAME:?error}; $${NAME} is a literal for the container.
INTERPOLATED = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)")
# Enough to pass every ${VAR:?} of the production file.
REQUIRED_VALUES = {
    "DJANGO_SECRET_KEY": "x" * 60,
    "WEBHOOK_SIGNING_SECRET": "w" * 40,
    "FLOWER_PASSWORD": "flower-password",
    "POSTGRES_PASSWORD": "postgrespassword",
}


def load(name: str) -> dict:
    return yaml.safe_load((ROOT / name).read_text())


def command_words(service: dict) -> list[str]:
    command = service.get("command", [])
    return command.split() if isinstance(command, str) else list(command)


def option_value(words: list[str], option: str) -> str:
    return words[words.index(option) + 1]


def env_example_names() -> set[str]:
    names = set()
    for line in (ROOT / ".env.example").read_text().splitlines():
        # Commented-out variables ("# CELERY_BROKER_URL=") are listed too.
        match = re.match(r"#?\s*([A-Z][A-Z0-9_]*)=", line.strip())
        if match:
            names.add(match.group(1))
    return names


def seconds(duration: str) -> int:
    units = {"h": 3600, "m": 60, "s": 1}
    return sum(int(n) * units[u] for n, u in re.findall(r"(\d+)([hms])", duration))


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_services_are_named_as_the_seed_names_them(name):
    # given / when
    services = load(name)["services"]

    # then: the seed's services (and the background worker) run by default; the others only under a profile
    assert {n for n, service in services.items() if "profiles" not in service} == SEED_SERVICES | DEFAULT_EXTRA_SERVICES
    optional = {n for n, service in services.items() if "profiles" in service}
    assert optional <= OPTIONAL_SERVICES
    assert (optional >= MONITORING_SERVICES) == (name == "docker-compose.yml")


def mounted(service: dict) -> dict[str, Path]:
    """{path in the container: file or folder of this repository} of a service's bind mounts."""
    mounts = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("./"):
            mounts[target] = ROOT / source
    return mounts


def test_prometheus_and_grafana_are_optional_and_provisioned_from_deploy_monitoring():
    # given
    compose = load("docker-compose.yml")
    prometheus, grafana = compose["services"]["prometheus"], compose["services"]["grafana"]
    prometheus_files, grafana_files = mounted(prometheus), mounted(grafana)

    # then: both only with `--profile monitoring`, listening on loopback
    for service in (prometheus, grafana):
        assert service["profiles"] == ["monitoring"]
        assert all(port.startswith("127.0.0.1:") for port in service["ports"])
    # Prometheus: its config and alert rules come from deploy/monitoring/ and point at each other
    for path in prometheus_files.values():
        assert path.exists(), path
    config = yaml.safe_load(prometheus_files["/etc/prometheus/prometheus.yml"].read_text())
    assert config["rule_files"] == ["/etc/prometheus/alerts.yml"]
    assert prometheus_files["/etc/prometheus/alerts.yml"] == ROOT / "deploy/monitoring/alerts.yml"
    # it scrapes web's /metrics with the bearer token, read from the secret made of METRICS_TOKEN
    (job,) = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    assert job["static_configs"] == [{"targets": ["web:8000"]}]
    assert job["authorization"] == {"type": "Bearer", "credentials_file": "/run/secrets/metrics_token"}
    assert prometheus["secrets"] == ["metrics_token"]
    assert compose["secrets"]["metrics_token"] == {"environment": "METRICS_TOKEN"}
    assert "METRICS_TOKEN" in env_example_names()
    assert "web" in prometheus["depends_on"]
    # Grafana: the datasource is that Prometheus, and the dashboards folder is the one provisioned
    provisioning = grafana_files["/etc/grafana/provisioning"]
    (datasource,) = yaml.safe_load((provisioning / "datasources/prometheus.yml").read_text())["datasources"]
    assert datasource["url"] == "http://prometheus:9090"
    (provider,) = yaml.safe_load((provisioning / "dashboards/claw-ai.yml").read_text())["providers"]
    dashboards = grafana_files[provider["options"]["path"]]
    assert sorted(path.name for path in dashboards.glob("*.json")) == ["claw-ai.json"]
    assert "prometheus" in grafana["depends_on"]
    assert {"prometheus-data", "grafana-data"} <= set(compose["volumes"])


@pytest.mark.parametrize("service", WORKER_SERVICES)
@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_the_worker_can_be_scaled(name, service):
    # given
    worker = load(name)["services"][service]
    words = command_words(worker)

    # then: a fixed container name would make `--scale celery-worker=4` fail
    assert "container_name" not in worker
    assert "ports" not in worker
    # each replica gets a unique node name from its container hostname, so remote control reaches each one
    assert option_value(words, "-n") == WORKER_SERVICES[service]


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_the_workers_consume_the_four_queues_with_time_limits_where_celery_enforces_them(name):
    # given
    services = load(name)["services"]
    ai, background = (command_words(services[service]) for service in WORKER_SERVICES)

    # then: AI replies on threads (the provider call is bounded by LLM_TIMEOUT), the rest on prefork,
    # where the soft and hard time limits are enforced; each queue consumed by one of them
    for words in (ai, background):
        assert words[:4] == ["celery", "-A", "claw_ai", "worker"]
    assert option_value(ai, "-Q").split(",") == [settings.QUEUE_AI]
    assert option_value(ai, "-P") == "${CELERY_WORKER_POOL:-threads}"
    assert option_value(background, "-Q").split(",") == [
        settings.QUEUE_KNOWLEDGE,
        settings.QUEUE_NOTIFICATION,
        settings.QUEUE_DEFAULT,
    ]
    assert option_value(background, "-P") == "prefork"
    # the seed's `up -d celery-worker` brings the background worker along
    assert services["celery-worker"]["depends_on"]["celery-worker-background"] == {"condition": "service_started"}


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_there_is_exactly_one_beat(name):
    # given
    services = load(name)["services"]

    # when
    beats = [service for service in services.values() if command_words(service)[3:4] == ["beat"]]

    # then: one beat, with the leased scheduler, so a second one by accident would stand by
    assert len(beats) == 1
    assert beats[0] is services["celery-beat"]
    assert beats[0].get("deploy", {}).get("replicas", 1) == 1
    assert option_value(command_words(beats[0]), "-S") == settings.CELERY_BEAT_SCHEDULER


def test_make_run_starts_beat_with_the_leased_scheduler():
    procfile = (ROOT / "Procfile").read_text()
    assert f"beat: celery -A claw_ai beat -S {settings.CELERY_BEAT_SCHEDULER} " in procfile


@pytest.mark.parametrize("service", WORKER_SERVICES)
@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_the_worker_shuts_down_warm_within_the_task_time_limit(name, service):
    # given
    worker = load(name)["services"][service]

    # then: SIGTERM (Celery's warm shutdown) and time for the longest task to finish
    assert worker.get("stop_signal", "SIGTERM") == "SIGTERM"
    assert seconds(worker["stop_grace_period"]) > settings.CELERY_TASK_TIME_LIMIT


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_services_start_in_order_of_health(name):
    # given
    services = load(name)["services"]

    # then: every dependency waits for health, and every service depended on has a healthcheck
    for service_name, service in services.items():
        for dependency, condition in service.get("depends_on", {}).items():
            if (service_name, dependency) == ("celery-worker", "celery-worker-background"):
                continue  # started along, not waited for (the AI workers need nothing of it)
            assert condition == {"condition": "service_healthy"}, (service_name, dependency)
            assert "healthcheck" in services[dependency], dependency
    for service_name in ("web", "celery-worker", "celery-worker-background", "celery-flower", "postgres", "redis"):
        assert "healthcheck" in services[service_name], service_name
    # the worker and beat need the schema web's entrypoint migrates
    assert "web" in services["celery-worker"]["depends_on"]
    assert "web" in services["celery-beat"]["depends_on"]


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_data_lives_in_named_volumes(name):
    # given
    compose = load(name)

    # then: named (so `down -v` removes them), not bind mounts
    assert "postgres-data:/var/lib/postgresql/data" in compose["services"]["postgres"]["volumes"]
    assert "postgres-data" in compose["volumes"]
    assert "redis-data" in compose["volumes"]


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_app_services_read_dot_env_and_reach_the_compose_servers(name):
    # given
    services = load(name)["services"]

    for service_name in APP_SERVICES:
        environment = services[service_name]["environment"]
        # then
        assert services[service_name]["env_file"] == ".env", service_name
        assert "@postgres:5432/" in environment["DATABASE_URL"], service_name
        assert environment["REDIS_URL"] == "redis://redis:6379/0", service_name


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_every_interpolated_variable_is_listed_in_env_example(name):
    # given
    referenced = set(INTERPOLATED.findall((ROOT / name).read_text()))

    # then
    assert referenced
    assert referenced - env_example_names() == set()


def test_production_runs_production_settings_under_gunicorn():
    # given
    services = load("docker-compose.prod.yml")["services"]

    # then
    for service_name in APP_SERVICES:
        environment = services[service_name]["environment"]
        assert environment["DJANGO_SETTINGS_MODULE"] == "claw_ai.settings.production"
        assert environment["DJANGO_SECRET_KEY"].startswith("${DJANGO_SECRET_KEY:?")
        # production settings refuse the development webhook secret: compose asks for one first
        assert environment["WEBHOOK_SIGNING_SECRET"].startswith("${WEBHOOK_SIGNING_SECRET:?")
    web = command_words(services["web"])
    assert web[:2] == ["--setup", "gunicorn"]
    # ASGI: an open reply stream (Server-Sent Events) holds no thread
    assert "claw_ai.asgi:application" in web
    assert web[web.index("-k") + 1] == "uvicorn_worker.UvicornWorker"


def test_production_refuses_flower_without_a_password():
    # given
    flower = load("docker-compose.prod.yml")["services"]["celery-flower"]
    environment = flower["environment"]

    # then: compose stops at ${FLOWER_PASSWORD:?...}, and Flower runs with basic auth
    assert "${FLOWER_PASSWORD:?" in environment["FLOWER_BASIC_AUTH"]
    assert "${FLOWER_PASSWORD:?" in environment["FLOWER_PASSWORD"]


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_flower_runs_with_metrics_behind_auth_and_no_password_on_its_command_line(name):
    # given
    flower = load(name)["services"]["celery-flower"]
    words = command_words(flower)

    # then: the launcher that puts /metrics behind the basic auth, credentials from the environment
    assert words[:3] == ["python", "-m", "claw_ai.flower_server"]
    assert not any("basic_auth" in word or "PASSWORD" in word for word in words)
    assert "FLOWER_BASIC_AUTH" in flower["environment"]


def test_production_does_not_publish_the_data_servers():
    # given
    services = load("docker-compose.prod.yml")["services"]

    # then
    assert "ports" not in services["postgres"]
    assert "ports" not in services["redis"]


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    instructions = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            keyword, _, rest = line.strip().partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
    return instructions


def test_the_image_runs_as_a_user_from_python_slim():
    # given
    instructions = dockerfile_instructions()

    # then
    assert instructions[0] == ("FROM", "python:3.11-slim")
    users = [rest for keyword, rest in instructions if keyword == "USER"]
    assert users
    assert users[-1] not in ("root", "0")


def test_the_image_installs_the_pinned_runtime_requirements_only():
    # given
    runs = [rest for keyword, rest in dockerfile_instructions() if keyword == "RUN"]
    installs = [run for run in runs if "pip install" in run]

    # then: the pinned runtime requirements, and the tracing ones only when the build asks for them
    assert len(installs) == 1
    always, _, optional = installs[0].partition("&&")
    assert always.strip() == "pip install -r requirements.txt"
    assert optional.strip() == 'if [ "$WITH_TRACING" = "1" ]; then pip install -r requirements-tracing.txt; fi'
    assert ("ARG", "WITH_TRACING=0") in dockerfile_instructions()
    assert "requirements-dev" not in installs[0]
    assert any("collectstatic" in run for run in runs)


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_compose_builds_the_image_with_tracing_only_when_asked(name):
    # given
    build = load(name)["services"]["web"]["build"]

    # then
    assert build["context"] == "."
    assert build["args"]["WITH_TRACING"] == "${WITH_TRACING:-0}"


def test_files_the_image_refers_to_exist():
    # given
    instructions = dockerfile_instructions()
    copied = [rest.split()[0] for keyword, rest in instructions if keyword == "COPY"]
    entrypoint = next(rest for keyword, rest in instructions if keyword == "ENTRYPOINT")
    entrypoint_path = ROOT / yaml.safe_load(entrypoint)[0].removeprefix("/app/")

    # then
    for source in copied:
        assert (ROOT / source).exists(), source
    assert entrypoint_path.is_file()
    assert os.access(entrypoint_path, os.X_OK)


def test_the_entrypoint_and_healthchecks_refer_to_existing_commands_and_files():
    # given
    script = (ROOT / "docker" / "entrypoint.sh").read_text()
    managed = re.findall(r"python manage\.py (\S+)", script)
    compose_text = "".join((ROOT / name).read_text() for name in COMPOSE_FILES)
    scripts = set(re.findall(r'"(docker/[\w./-]+)"', compose_text))

    # then
    assert {"migrate", "ensure_admin", "setup_periodic_tasks"} <= set(managed)
    assert set(managed) - set(get_commands()) == set()
    assert scripts == {"docker/healthcheck.py"}
    for path in scripts:
        assert (ROOT / path).is_file()


def compose_client() -> list[str] | None:
    candidates = [["docker", "compose"], ["docker-compose"]]
    for client in candidates:
        if shutil.which(client[0]) is None:
            continue
        probe = subprocess.run([*client, "version"], capture_output=True, text=True, check=False)
        if probe.returncode == 0:
            return client
    return None


def compose_config(client, tmp_path, name, environment):
    """`compose config` on a copy, with .env made from .env.example (as README tells a user)."""
    shutil.copy(ROOT / name, tmp_path / name)
    shutil.copy(ROOT / ".env.example", tmp_path / ".env")
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), **environment}
    return subprocess.run(
        [*client, "-f", name, "config"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_compose_accepts_the_file(tmp_path, name):
    client = compose_client()
    if client is None:
        pytest.skip("no compose client here (neither `docker compose` nor `docker-compose` answers `version`)")

    # when
    result = compose_config(client, tmp_path, name, REQUIRED_VALUES)

    # then
    assert result.returncode == 0, result.stderr
    assert set(yaml.safe_load(result.stdout)["services"]) == SEED_SERVICES


@pytest.mark.parametrize("secret", ["FLOWER_PASSWORD", "WEBHOOK_SIGNING_SECRET"])
def test_compose_refuses_production_without_a_secret(tmp_path, secret):
    client = compose_client()
    if client is None:
        pytest.skip("no compose client here (neither `docker compose` nor `docker-compose` answers `version`)")
    # given
    without_it = {k: v for k, v in REQUIRED_VALUES.items() if k != secret}

    # when
    result = compose_config(client, tmp_path, "docker-compose.prod.yml", without_it)

    # then
    assert result.returncode != 0
    assert secret in result.stderr


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_rabbitmq_is_an_optional_broker_behind_a_profile(name):
    # given
    services = load(name)["services"]
    rabbitmq = services["rabbitmq"]

    # then: started only with --profile rabbitmq, nothing needs it, its data in a named volume, and
    # delayed tasks (held unacknowledged until their eta) are not cut off by the delivery timeout
    assert rabbitmq["profiles"] == ["rabbitmq"]
    assert not any("rabbitmq" in service.get("depends_on", {}) for service in services.values())
    assert "rabbitmq-data:/var/lib/rabbitmq" in rabbitmq["volumes"]
    assert "consumer_timeout undefined" in rabbitmq["environment"]["RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS"]
    assert "healthcheck" in rabbitmq
