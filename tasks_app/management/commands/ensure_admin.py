"""Make sure an admin account exists (run by `make run` and the compose entrypoint).

With DJANGO_SUPERUSER_USERNAME / DJANGO_SUPERUSER_PASSWORD set, that account is
created if missing (its password is never overwritten). Without them, and with
no superuser yet, one is created with a generated password printed once.
"""

import os
import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create the admin account if it does not exist yet."

    def handle(self, *args, **options):
        users = get_user_model()
        username = os.environ.get("DJANGO_SUPERUSER_USERNAME")
        password = os.environ.get("DJANGO_SUPERUSER_PASSWORD")
        email = os.environ.get("DJANGO_SUPERUSER_EMAIL", "")
        if username:
            if users.objects.filter(username=username).exists():
                self.stdout.write(f"admin account {username!r} exists")
                return
            if not password:
                password = secrets.token_urlsafe(12)
                self._announce(username, password)
            users.objects.create_superuser(username=username, email=email, password=password)
            self.stdout.write(f"admin account {username!r} created")
            return
        if users.objects.filter(is_superuser=True).exists():
            self.stdout.write("an admin account exists")
            return
        password = secrets.token_urlsafe(12)
        users.objects.create_superuser(username="admin", email=email, password=password)
        self._announce("admin", password)

    def _announce(self, username: str, password: str) -> None:
        self.stdout.write(
            self.style.WARNING(
                f"\n  Admin account created: {username} / {password}\n"
                "  (shown once; set DJANGO_SUPERUSER_USERNAME / DJANGO_SUPERUSER_PASSWORD to choose your own)\n"
            )
        )
