"""`make run`'s logs say what happens and nothing else: no line per static file, no ".env not found"."""

import contextlib
import urllib.request

import psutil
import pytest

from tests.foundation.test_make_run import procfile_process
from tests.support.processes import LOG_DIR
from tests.support.waiting import wait_for

pytestmark = pytest.mark.worker  # make run's processes


def listening_port(process: psutil.Process) -> int:
    for member in (process, *process.children(recursive=True)):
        with contextlib.suppress(psutil.NoSuchProcess):
            for conn in member.net_connections(kind="tcp"):
                if conn.status == psutil.CONN_LISTEN:
                    return conn.laddr.port
    raise AssertionError("nothing listens")


def fetch(url: str) -> int:
    # Generous: gunicorn listens before its uvicorn workers have imported Django (seconds on a busy
    # machine), and the first request waits for one of them.
    with urllib.request.urlopen(url, timeout=60) as response:
        response.read()
        return response.status


def test_the_web_servers_access_log_leaves_out_static_files():
    # given the Procfile's web server
    with procfile_process("web", bind_host=None) as (process, _):
        port = listening_port(process)
        log_path = LOG_DIR / f"procfile-web-{port}.log"

        # when a page and the stylesheet it uses are fetched
        assert fetch(f"http://127.0.0.1:{port}/static/admin/css/base.css") == 200
        assert fetch(f"http://127.0.0.1:{port}/admin/login/") == 200

        # then the page is logged, the stylesheet is not
        wait_for(lambda: "GET /admin/login/" in log_path.read_text(), timeout=10, what="the access log line")
        assert "/static/" not in log_path.read_text()


def test_flower_starts_without_complaining_about_a_missing_env_file():
    # given no .env in the checkout (none in a fresh clone), when Flower starts as make run starts it
    with procfile_process("flower", bind_host=None) as (process, _):
        log_path = LOG_DIR / f"procfile-flower-{listening_port(process)}.log"

        # then its log says nothing of .env
        assert ".env" not in log_path.read_text()
