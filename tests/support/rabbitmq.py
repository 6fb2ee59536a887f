"""A RabbitMQ for the broker-level end-to-end tests: one virtual host per test run.

Where: CLAW_TEST_RABBITMQ_URL when set, else the machine's RabbitMQ on 127.0.0.1:5672 (guest/guest)
when it answers, else a private node started from the system's rabbitmq-server when it is installed
(devtools.private_servers.PrivateRabbitMQ; removed at the end of the run). On a shared RabbitMQ each
test run (each pytest-xdist process) gets a virtual host of its own, created with rabbitmqctl and
deleted at the end, so parallel runs never share a queue. When rabbitmqctl
cannot create one (not installed here, or not allowed), the URL's own virtual host is used: the
tests' own queues are unique per test, but the four standard queues are then shared with whoever
else uses it. When there is none of these, the RabbitMQ half of the tests is skipped, with the reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from urllib.parse import quote, urlsplit, urlunsplit

from kombu import Connection

from devtools.private_servers import PrivateRabbitMQ

DEFAULT_URL = "amqp://guest:guest@127.0.0.1:5672//"


@dataclass
class RunVirtualHost:
    url: str | None  # None: no RabbitMQ; see `reason`
    reason: str = ""
    vhost: str | None = None  # created by the test run, deleted at its end
    server: PrivateRabbitMQ | None = None  # started by the test run, removed at its end

    def delete(self) -> None:
        if self.server is not None:
            self.server.remove()
        elif self.vhost:
            subprocess.run(["rabbitmqctl", "delete_vhost", self.vhost], capture_output=True, timeout=60, check=False)


def answers(url: str) -> str:
    """ "" when a broker at `url` accepts a connection, else why not."""
    try:
        with Connection(url, connect_timeout=3) as connection:
            connection.ensure_connection(max_retries=1)
    except Exception as error:  # noqa: BLE001 (any failure means: not usable)
        return f"{type(error).__name__}: {error}"
    return ""


def with_vhost(url: str, vhost: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + quote(vhost, safe="")))


def create_run_vhost(url: str) -> RunVirtualHost:
    user = urlsplit(url).username or "guest"
    vhost = f"claw_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    if shutil.which("rabbitmqctl") is None:
        return RunVirtualHost(url)
    for command in (
        ["rabbitmqctl", "add_vhost", vhost],
        ["rabbitmqctl", "set_permissions", "-p", vhost, user, ".*", ".*", ".*"],
    ):
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        if done.returncode != 0:
            print(f"rabbitmqctl could not create a virtual host ({done.stderr.strip()[:200]}); using {url}")
            return RunVirtualHost(url)
    return RunVirtualHost(with_vhost(url, vhost), vhost=vhost)


def rabbitmq_for_this_run() -> RunVirtualHost:
    explicit = os.environ.get("CLAW_TEST_RABBITMQ_URL")
    url = explicit or DEFAULT_URL
    problem = answers(url)
    if not problem:
        return create_run_vhost(url)
    if explicit:
        return RunVirtualHost(None, reason=f"CLAW_TEST_RABBITMQ_URL={url} does not answer ({problem})")
    if PrivateRabbitMQ.binary() is None:
        return RunVirtualHost(
            None,
            reason=f"no RabbitMQ at {url} ({problem}) and no rabbitmq-server to start; "
            "set CLAW_TEST_RABBITMQ_URL to run the RabbitMQ half",
        )
    server = PrivateRabbitMQ()
    try:
        return RunVirtualHost(server.start(), server=server)
    except Exception as error:  # noqa: BLE001 (it could not start: say why, skip)
        server.remove()
        return RunVirtualHost(None, reason=f"no RabbitMQ at {url} ({problem}); a private one did not start: {error}")
