import os

from django.core.asgi import get_asgi_application

from claw_ai.access_log import quiet_static_files

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "claw_ai.settings.development")
application = get_asgi_application()
quiet_static_files()
