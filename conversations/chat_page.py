"""/chat/: a page where a signed-in API user chats with the assistant and watches replies stream.

The page is a client of the public API and nothing else: the template and chat.js list the
user's conversations (/api/v1/conversations/), send a message (/api/v1/tasks/ai/generate), read
the reply as it is written (/api/v1/tasks/stream/{id}, Server-Sent Events) and stop it
(/api/v1/tasks/cancel/{id}), with the session cookie and the CSRF token a browser has. So what a
chat frontend can do with the API is exactly what this page shows, and nothing here reaches into
the database on the page's behalf.
"""

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.shortcuts import render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.csrf import ensure_csrf_cookie


@ensure_csrf_cookie
def chat_page(request):
    if not request.user.is_authenticated:
        # DRF's login page takes any API user (the admin's takes staff only), and comes back here.
        return redirect_to_login(request.get_full_path(), reverse("rest_framework:login"))
    context = {
        "texts": page_texts(),
        # A conversation started here is the API user's own chat: its chat user id is the username.
        "chat_user_id": request.user.get_username(),
        "max_message_length": settings.AI_USER_MESSAGE_MAX_LENGTH,
    }
    return render(request, "conversations/chat.html", context)


def page_texts() -> dict[str, str]:
    """The words chat.js writes into the page, in the request's language (the script has no catalogue)."""
    return {
        "new_conversation": _("New conversation"),
        "no_conversations": _("No conversations yet: start one."),
        "no_messages": _("No messages yet. Ask something below."),
        "you": _("You"),
        "assistant": _("Assistant"),
        "task": _("task"),
        "status": _("status"),
        "tokens": _("tokens"),
        "estimated": _("estimated"),
        "cost": _("cost"),
        "first_token": _("first token"),
        "writing": _("writing…"),
        "queued": _("queued…"),
        "cancelled": _("Stopped: the reply was cancelled."),
        "failed": _("The reply failed"),
        "budget": _("The AI budget ran out: the reply ends here."),
        "connection_lost": _("Connection lost; reconnecting…"),
        "request_failed": _("The request failed"),
    }
