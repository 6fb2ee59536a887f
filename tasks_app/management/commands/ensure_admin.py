"""Make sure an admin account exists (run by `make run` and the compose entrypoint).

With DJANGO_SUPERUSER_USERNAME / DJANGO_SUPERUSER_PASSWORD set, that account is
created if missing (its password is never overwritten). Without a password, the
account is created with a generated one, printed; `--password-file` (make run)
also keeps it there, so `make admin-password` can print it again.
"""

import os
import secrets
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create the admin account if it does not exist yet."

    def add_arguments(self, parser):
        parser.add_argument(
            "--password-file",
            type=Path,
            help="keep a generated password in this file (git-ignored), to be printed again later",
        )

    def handle(self, *args, password_file: Path | None = None, **options):
        self.password_file = password_file
        users = get_user_model()
        username = os.environ.get("DJANGO_SUPERUSER_USERNAME")
        password = os.environ.get("DJANGO_SUPERUSER_PASSWORD")
        email = os.environ.get("DJANGO_SUPERUSER_EMAIL", "")
        if username:
            if users.objects.filter(username=username).exists():
                self._exists(username)
                return
            if not password:
                password = secrets.token_urlsafe(12)
                self._announce(username, password)
            users.objects.create_superuser(username=username, email=email, password=password)
            self.stdout.write(f"admin account {username!r} created")
            return
        existing = users.objects.filter(is_superuser=True).order_by("pk").first()
        if existing is not None:
            self._exists(existing.get_username())
            return
        password = secrets.token_urlsafe(12)
        users.objects.create_superuser(username="admin", email=email, password=password)
        self._announce("admin", password)

    def _exists(self, username: str) -> None:
        again = "`make admin-password` prints its generated password; " if self._saved(username) else ""
        self.stdout.write(
            f"admin account {username!r} exists ({again}reset it: python manage.py changepassword {username})"
        )

    def _saved(self, username: str) -> bool:
        if self.password_file is None or not self.password_file.exists():
            return False
        return self.password_file.read_text().split(" ", 1)[0] == username

    def _announce(self, username: str, password: str) -> None:
        if self.password_file is not None:
            self.password_file.parent.mkdir(parents=True, exist_ok=True)
            self.password_file.write_text(f"{username} {password}\n")
            self.password_file.chmod(0o600)
            again = f"kept in {self.password_file}: `make admin-password` prints it again"
        else:
            again = "shown once"
        self.stdout.write(
            self.style.WARNING(
                f"\n  Admin account created: {username} / {password}\n"
                f"  ({again}; reset it: python manage.py changepassword {username};\n"
                "  set DJANGO_SUPERUSER_USERNAME / DJANGO_SUPERUSER_PASSWORD to choose your own)\n"
            )
        )
