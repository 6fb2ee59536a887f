"""The container's entrypoint and healthcheck, run on this machine as the image runs them."""

import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from fnmatch import fnmatch
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.management.utils import get_random_secret_key
from rest_framework.authtoken.models import Token

from tests.support.processes import ROOT, TestProcess, process_env
from tests.support.waiting import wait_for

# Starts manage.py and gunicorn processes: left out of make test-fast.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]


def copy_build_context(destination: Path) -> None:
    """Copy what `COPY . .` puts in the image: the tree less .dockerignore's patterns."""
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    excluded = [p for p in patterns if not p.startswith("!")]
    kept = [p[1:] for p in patterns if p.startswith("!")]

    def ignored(relative: str) -> bool:
        name = relative.rsplit("/", 1)[-1]
        hit = any(fnmatch(relative, p) or (p.startswith("**/") and fnmatch(name, p[3:])) for p in excluded)
        return hit and not any(fnmatch(relative, p) for p in kept)

    for directory, subdirectories, files in os.walk(ROOT):
        relative_dir = Path(directory).relative_to(ROOT)
        subdirectories[:] = [d for d in subdirectories if not ignored((relative_dir / d).as_posix())]
        for name in files:
            relative = relative_dir / name
            if not ignored(relative.as_posix()):
                (destination / relative).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / relative, destination / relative)


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Path:
    """The image's /app, built as the Dockerfile builds it (static files collected)."""
    app = tmp_path_factory.mktemp("app")
    copy_build_context(app)
    build_env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "claw_ai.settings.production",
        "DJANGO_SECRET_KEY": get_random_secret_key(),
        "WEBHOOK_SIGNING_SECRET": get_random_secret_key(),
        "FLOWER_PASSWORD": "collectstatic-only",
        "DATABASE_URL": "postgres://build@localhost:5432/build",
        "REDIS_URL": "redis://localhost:6379/0",
    }
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"],
        cwd=app,
        env=build_env,
        check=True,
        timeout=300,
    )
    return app


def container_env(**overrides: str) -> dict[str, str]:
    """Production settings against the test database, with the venv's python first on PATH."""
    return process_env(
        DJANGO_SETTINGS_MODULE="claw_ai.settings.production",
        DJANGO_SECRET_KEY=get_random_secret_key(),
        WEBHOOK_SIGNING_SECRET=get_random_secret_key(),
        FLOWER_PASSWORD="container-flower-password",
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        **overrides,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_web_setup_migrates_creates_the_admin_then_runs_the_command(image):
    # given
    env = container_env(DJANGO_SUPERUSER_USERNAME="operator", DJANGO_SUPERUSER_PASSWORD="a-long-password-1")

    # when
    result = subprocess.run(
        [image / "docker" / "entrypoint.sh", "--setup", "python", "-c", "print('command ran')"],
        cwd=image,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )

    # then
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith("command ran")
    assert get_user_model().objects.filter(username="operator", is_superuser=True).exists()


def test_other_roles_run_their_command_directly(image):
    # when
    result = subprocess.run(
        [image / "docker" / "entrypoint.sh", "python", "-c", "import os; print(os.environ['DJANGO_SETTINGS_MODULE'])"],
        cwd=image,
        env=container_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    # then
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "claw_ai.settings.production"


@contextlib.contextmanager
def production_gunicorn(image: Path, log_path: Path):
    """The web server as the production image runs it, on a free loopback port: yields (process, port)."""
    port = free_port()
    entrypoint = image / "docker" / "entrypoint.sh"
    command = [
        entrypoint,
        "gunicorn",
        "claw_ai.asgi:application",
        "-k",
        "uvicorn_worker.UvicornWorker",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        "1",
    ]
    with TestProcess(command, name="gunicorn", env=container_env(), cwd=image, log_path=log_path) as server:
        yield server.process, port


def test_healthcheck_passes_for_production_gunicorn_and_fails_without_a_server(image, tmp_path):
    healthcheck = image / "docker" / "healthcheck.py"
    log_path = tmp_path / "gunicorn.log"
    # given the web server as the production image runs it
    with production_gunicorn(image, log_path) as (server, port):
        url = f"http://127.0.0.1:{port}/admin/login/"

        # when
        def healthy():
            if server.poll() is not None:
                raise AssertionError(f"gunicorn exited ({server.returncode}):\n{log_path.read_text()}")
            check = subprocess.run(
                [sys.executable, healthcheck, url], capture_output=True, text=True, timeout=30, check=False
            )
            return check if check.returncode == 0 else None

        result = wait_for(healthy, timeout=60, interval=0.2, what="a healthy web server")

        # then: the page itself answered (the proxy header avoids the HTTPS redirect)
        assert result.stdout.strip() == f"{url}: 200"
    assert (
        subprocess.run([sys.executable, healthcheck, url], capture_output=True, timeout=30, check=False).returncode == 1
    )


def fetch(url: str, token: str) -> tuple[int, str, bytes]:
    """GET `url` as an API user behind the TLS proxy (production redirects plain HTTP)."""
    request = urllib.request.Request(url, headers={"Authorization": f"Token {token}", "X-Forwarded-Proto": "https"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, response.headers["Content-Type"], response.read()


def test_api_docs_load_swagger_ui_from_the_images_own_static_files(image, tmp_path):
    # given an API user, and the web server as the production image runs it
    token = Token.objects.create(user=get_user_model().objects.create_user("docs-reader", password="pw")).key
    log_path = tmp_path / "gunicorn.log"
    with production_gunicorn(image, log_path) as (server, port):
        base = f"http://127.0.0.1:{port}"

        def docs_page():
            if server.poll() is not None:
                raise AssertionError(f"gunicorn exited ({server.returncode}):\n{log_path.read_text()}")
            try:
                return fetch(f"{base}/api/docs/", token)
            except urllib.error.HTTPError:
                raise  # an answer, just not the page
            except urllib.error.URLError:
                return None  # not listening yet

        # when the docs page is opened
        status, _, page = wait_for(docs_page, timeout=60, interval=0.2, what="the docs page")

        # then everything it loads is Swagger UI from our static files (the package's, collected
        # into the image), none from a CDN
        assert status == 200
        assets = re.findall(r'(?:src|href)="([^"]*)"', page.decode())
        names = {asset.rsplit("/", 1)[-1].split(".")[0] for asset in assets}
        assert names == {"favicon-32x32", "swagger-ui", "swagger-ui-bundle", "swagger-ui-standalone-preset"}
        for asset in assets:
            assert asset.startswith("/static/drf_spectacular_sidecar/swagger-ui-dist/"), asset
            # and the production server (WhiteNoise) serves each one
            status, content_type, body = fetch(base + asset, token)
            assert status == 200, asset
            assert body, asset
            assert content_type.split(";")[0] in ("text/javascript", "text/css", "image/png"), (asset, content_type)


def test_the_image_holds_the_code_and_nothing_private(image):
    # then: what the processes need is in; environments, data, secrets and tests are out
    for needed in ("manage.py", "requirements.txt", "claw_ai/celery.py", "tasks_app", "conversations", "staticfiles"):
        assert (image / needed).exists(), needed
    for private in (".venv", ".devdata", ".git", ".env", "tests", "bench"):
        assert not (image / private).exists(), private
    assert (image / ".env.example").exists()
