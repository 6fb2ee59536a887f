"""/chat/ as a server answers it: who gets the page, what it loads, and in which language."""

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


def test_an_anonymous_visitor_is_sent_to_the_login_page_and_back():
    # when someone not signed in opens the page
    response = Client().get("/chat/")

    # then they are sent to the API's login page, which brings them back here
    assert response.status_code == 302
    assert response["Location"] == "/api-auth/login/?next=/chat/"


def test_the_login_page_takes_an_ordinary_api_user_back_to_the_chat(alice):
    # given the login form the redirect leads to
    client = Client()
    login = client.get("/api-auth/login/?next=/chat/")
    assert login.status_code == 200

    # when an API user who is not staff signs in there
    response = client.post("/api-auth/login/?next=/chat/", {"username": "alice", "password": "pw", "next": "/chat/"})

    # then they land on the chat page
    assert response.status_code == 302
    assert response["Location"] == "/chat/"
    assert client.get("/chat/").status_code == 200


def test_a_signed_in_user_gets_the_page_with_its_script_and_a_csrf_token(alice):
    # given alice signed in
    client = Client()
    client.force_login(alice)

    # when she opens the page
    response = client.get("/chat/")

    # then it loads its own script and style (no CDN), carries the CSRF token for the API's POSTs
    page = response.content.decode()
    assert response.status_code == 200
    assert '<script src="/static/conversations/chat.js">' in page
    assert 'href="/static/conversations/chat.css"' in page
    assert "https://" not in page
    assert "http://" not in page
    assert response.cookies["csrftoken"].value
    assert f'<meta name="csrf-token" content="{response.context["csrf_token"]}">' in page
    # and names her as the chat user of the conversations she starts
    assert '<script id="chat-user-id" type="application/json">"alice"</script>' in page
    assert "Signed in as alice" in page


def test_the_page_and_the_words_its_script_writes_are_in_chinese_for_a_chinese_browser(alice):
    client = Client()
    client.force_login(alice)

    response = client.get("/chat/", HTTP_ACCEPT_LANGUAGE="zh-hans")

    page = response.content.decode()
    assert '<html lang="zh-hans">' in page
    for words in ("新会话", "发送", "停止", "已登录：alice"):
        assert words in page
    texts = response.context["texts"]
    assert texts["first_token"] == "首个词元"
    assert texts["cancelled"] == "已停止：回复已取消。"
