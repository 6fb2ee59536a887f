"""/api/docs/: Swagger UI for signed-in API users; anyone else gets a 401 page that offers the login.

drf-spectacular answers an anonymous visitor with DRF's bare 401 (16 bytes of text in a browser).
The 401 stays (with its WWW-Authenticate header, as every endpoint answers), now as a page that
links to the browsable API's login and comes back here after it.
"""

from django.http import HttpResponse
from django.urls import reverse
from django.utils.html import format_html
from django.utils.http import urlencode
from django.utils.translation import gettext as _
from drf_spectacular.views import SpectacularSwaggerView
from rest_framework.exceptions import NotAuthenticated


class SwaggerDocsView(SpectacularSwaggerView):
    def handle_exception(self, exc):
        response = super().handle_exception(exc)
        if not isinstance(exc, NotAuthenticated):
            return response
        login = reverse("rest_framework:login") + "?" + urlencode({"next": self.request.get_full_path()})
        page = format_html(
            '<!doctype html><html><head><meta charset="utf-8"><title>{title}</title></head><body>'
            '<h1>{title}</h1><p>{why} <a href="{login}">{log_in}</a></p><p>{token}</p></body></html>',
            title=_("CLAW.AI API docs"),
            why=_("The API documentation is for API users."),
            login=login,
            log_in=_("Log in to read it"),
            token=_("API clients: send Authorization: Token <key> (python manage.py drf_create_token <user>)."),
        )
        login_page = HttpResponse(page, status=response.status_code, content_type="text/html; charset=utf-8")
        if "WWW-Authenticate" in response:
            login_page["WWW-Authenticate"] = response["WWW-Authenticate"]
        return login_page
