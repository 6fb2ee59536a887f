"""`make run`: the whole system in the foreground, Ctrl-C stops everything.

Starts private PostgreSQL and Redis when DATABASE_URL / REDIS_URL are unset,
migrates, makes sure an admin account and the periodic jobs exist, then runs the
Procfile's processes under honcho. Flower's password is generated (and printed)
when FLOWER_PASSWORD is unset, so Flower never runs without credentials.
"""

import os
import secrets
import subprocess
import sys
from pathlib import Path

from devtools.private_servers import load_dotenv, servers
from devtools.private_servers import run as run_with_servers

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / ".devdata" / "run"


def flower_credentials() -> dict[str, str]:
    if os.environ.get("FLOWER_PASSWORD"):
        return {"FLOWER_USER": os.environ.get("FLOWER_USER", "admin")}
    saved = DATA / "flower-password"
    DATA.mkdir(parents=True, exist_ok=True)
    if not saved.exists():
        saved.write_text(secrets.token_urlsafe(12))
        saved.chmod(0o600)
    user = os.environ.get("FLOWER_USER", "admin")
    print(f"Flower: http://127.0.0.1:5555  user {user}  password {saved.read_text()}  (from {saved})", flush=True)
    return {"FLOWER_USER": user, "FLOWER_PASSWORD": saved.read_text()}


def main() -> int:
    load_dotenv(ROOT)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "claw_ai.settings.development")
    os.environ.update(flower_credentials())
    with servers(DATA) as env:
        os.environ.update(env)
        manage = [sys.executable, str(ROOT / "manage.py")]
        for step in (["migrate", "--noinput"], ["ensure_admin"], ["setup_periodic_tasks"]):
            subprocess.run([*manage, *step], check=True, cwd=ROOT)
        print("API and admin: http://127.0.0.1:8000/admin/  (Ctrl-C stops everything)", flush=True)
        # .env is already in the environment (real variables winning); honcho would otherwise
        # read it again and let it override the private servers' addresses.
        honcho = [str(Path(sys.executable).parent / "honcho"), "start", "-e", os.devnull, "-f", str(ROOT / "Procfile")]
        os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
        # DATABASE_URL/REDIS_URL are now set, so this starts no second set of servers.
        return run_with_servers(honcho, DATA)


if __name__ == "__main__":
    sys.exit(main())
