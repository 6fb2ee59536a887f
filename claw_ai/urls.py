from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView

import conversations.api.routes  # noqa: F401  (registers viewsets on the router)
import tasks_app.api.routes  # noqa: F401  (registers viewsets on the router)
from claw_ai.api import router
from claw_ai.docs import SwaggerDocsView
from conversations.api.streaming import reply_stream
from conversations.chat_page import chat_page
from monitoring.views import dashboard, metrics

# The admin's "View site" leads to the API root (the site has no home page of its own).
admin.site.site_url = "/api/v1/"

urlpatterns = [
    path("admin/monitoring/", admin.site.admin_view(dashboard), name="monitoring-dashboard"),
    path("admin/", admin.site.urls),
    # Server-Sent Events of one AI reply: a plain async view (DRF views are sync), beside the router's.
    re_path(r"^api/v1/tasks/stream/(?P<task_id>[^/]+)/?$", reply_stream, name="tasks-stream"),
    path("api/v1/", include(router.urls)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SwaggerDocsView.as_view(url_name="schema"), name="api-docs"),
    path("api-auth/", include("rest_framework.urls")),
    # A page to chat and watch replies stream, built on the public API only.
    path("chat/", chat_page, name="chat"),
    path("metrics", metrics, name="metrics"),
]

# Unknown /api/ paths and server errors answer API clients in the API's one JSON error shape.
handler404 = "claw_ai.errors.not_found"
handler500 = "claw_ai.errors.server_error"
