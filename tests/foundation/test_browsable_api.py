"""The browsable API as a newcomer meets it: a root that lists every endpoint, a generate form that
stays after each submission, titles in words, and docs that offer the login."""

import html
import re
from urllib.parse import unquote

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db

SEED_ENDPOINTS = (
    ("GET", "tasks/status/{task_id}"),
    ("GET", "tasks/list"),
    ("POST", "tasks/cancel/{task_id}"),
    ("POST", "tasks/retry/{task_id}"),
    ("GET", "tasks/stats"),
    ("POST", "tasks/ai/generate"),
    ("GET", "tasks/workers"),
    ("POST", "tasks/workers/pool/restart"),
    ("POST", "tasks/workers/shutdown"),
)
GENERATE = "/api/v1/tasks/ai/generate"
QUESTION = {"conversation_id": "conv_form", "user_id": "user_456"}


@pytest.fixture
def browser(alice) -> Client:
    """A signed-in user's browser: session cookie, asking for HTML."""
    client = Client(HTTP_ACCEPT="text/html")
    client.force_login(alice)
    return client


def links_of(page: str) -> set[str]:
    return {unquote(html.unescape(href)) for href in re.findall(r'<a href="([^"]+)"', page)}


def form_around(page: str, field: str) -> str:
    """The HTML form that holds the input named `field`."""
    forms = re.findall(r"<form.*?</form>", page, flags=re.S)
    holding = [form for form in forms if f'name="{field}"' in form]
    assert holding, f"no form with a {field} field"
    return holding[0]


def test_the_api_root_lists_and_links_the_nine_endpoints_of_the_seed(browser):
    # when the API root is read as JSON
    body = browser.get("/api/v1/", HTTP_ACCEPT="application/json").json()

    # then each seed endpoint has one line naming its method and path, and its link
    for method, path in SEED_ENDPOINTS:
        lines = [line for line in body if line.startswith(f"{method} {path} ")]
        assert len(lines) == 1, (method, path, list(body))
        assert body[lines[0]] == f"http://testserver/api/v1/{path}"

    # and in the browser each one is a link, under a title and a description in words
    page = browser.get("/api/v1/").content.decode()
    links = links_of(page)
    for _method, path in SEED_ENDPOINTS:
        assert f"http://testserver/api/v1/{path}" in links, path
    assert "CLAW.AI API" in page
    assert "default basic root view" not in page


@pytest.mark.django_db(transaction=True)  # a task is published outside any transaction
def test_the_generate_page_keeps_its_form_and_shows_the_answer_above_it_after_a_202(browser):
    # when a question is sent from the generate page's form
    response = browser.post(GENERATE, {**QUESTION, "user_message": "first question"})

    # then it is accepted, and the page shows the answer, then the form again with the question's fields
    assert response.status_code == 202
    page = response.content.decode()
    task_id = re.search(r"&quot;task_id&quot;: &quot;([0-9a-f-]{36})&quot;", page).group(1)
    form = form_around(page, "user_message")
    assert 'name="conversation_id"' in form
    assert 'name="task_id"' not in form
    assert page.index(task_id) < page.index(form)
    assert 'value="conv_form"' in form


def test_the_generate_page_shows_field_errors_beside_their_fields_after_a_400(browser):
    # when the form is sent with a temperature out of range and no message
    response = browser.post(GENERATE, {**QUESTION, "user_message": "", "temperature": "7"})

    # then the form is still there, with what was typed, and each error stands in its field's group
    assert response.status_code == 400
    form = form_around(response.content.decode(), "user_message")
    assert 'value="conv_form"' in form
    groups = re.findall(r'<div class="form-group has-error">.*?</div>\s*</div>', form, flags=re.S)
    assert any('name="user_message"' in group and "help-block" in group for group in groups), form
    assert any('name="temperature"' in group and "help-block" in group for group in groups), form


def test_page_titles_read_as_words(browser):
    page = browser.get(GENERATE).content.decode()
    assert "<title>AI generate" in re.sub(r"\s+", " ", page).replace("<title> ", "<title>")
    assert "Ai generate" not in page


def test_anonymous_api_docs_offer_the_login():
    # when someone not signed in opens the docs
    response = Client().get("/api/docs/", HTTP_ACCEPT="text/html")

    # then they are refused (401, as every endpoint) on a page that links to the login, back to the docs
    assert response.status_code == 401
    assert response["Content-Type"].startswith("text/html")
    assert "/api-auth/login/?next=/api/docs/" in links_of(response.content.decode())
