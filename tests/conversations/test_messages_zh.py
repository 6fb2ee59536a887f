"""The conversation and knowledge endpoints and the admin speak Simplified Chinese to zh-* callers."""

import pytest

from tests.factories import ConversationFactory, KnowledgeDocumentFactory

pytestmark = pytest.mark.django_db

ZH = {"HTTP_ACCEPT_LANGUAGE": "zh-CN"}


def test_field_errors_are_translated(api, user):
    # given a conversation id already taken
    ConversationFactory(public_id="conv_taken", user_id="u", created_by=user)

    # when a Chinese-speaking caller reuses it, and uploads a document without text
    taken = api.post("/api/v1/conversations/", {"conversation_id": "conv_taken", "user_id": "u"}, format="json", **ZH)
    empty = api.post("/api/v1/knowledge/documents/", {"user_id": "u", "title": "空"}, format="json", **ZH)

    # then the messages are in Chinese
    assert taken.json()["errors"]["conversation_id"] == ["已存在使用此 ID 的会话。"]
    assert empty.json()["errors"]["content"] == ["请以 content 字段或文件形式发送文档文本。"]


def test_the_request_size_limit_is_explained_in_chinese(api, settings):
    settings.MAX_REQUEST_BODY_BYTES = 10

    response = api.post("/api/v1/conversations/", {"user_id": "a-long-enough-id"}, format="json", **ZH)

    assert response.status_code == 413
    assert "请求体过大" in response.json()["message"]


def test_the_admin_names_the_apps_and_actions_in_chinese(client, staff_user):
    # given a superuser, and a document (the admin offers actions only when there are rows)
    staff_user.is_superuser = True
    staff_user.save()
    client.force_login(staff_user)
    KnowledgeDocumentFactory(user_id="u", title="Doc", content="text", created_by=staff_user)

    # when the admin is opened in Chinese
    index = client.get("/admin/", **ZH).content.decode()
    tasks = client.get("/admin/tasks_app/taskrecord/", **ZH).content.decode()
    documents = client.get("/admin/conversations/knowledgedocument/", **ZH).content.decode()

    # then the apps and the actions are named in Chinese
    assert "会话" in index
    assert "任务" in index
    assert "重试所选任务" in tasks
    assert "取消所选任务" in tasks
    assert "重建所选文档的索引" in documents
