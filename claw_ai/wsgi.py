import os

from django.core.wsgi import get_wsgi_application

from claw_ai.access_log import quiet_static_files

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "claw_ai.settings.development")
application = get_wsgi_application()
quiet_static_files()
