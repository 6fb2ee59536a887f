import pytest
from rest_framework.test import APIClient

from tests.factories import StaffFactory, UserFactory
from tests.support.fake_llm import FakeLLM
from tests.support.webhook_receiver import WebhookReceiver
from tests.support.workers import Worker

# AI tasks for the openai-provider worker go to a queue of their own, so the session's
# offline worker (which serves ai_high_priority) never takes them.
LLM_TEST_QUEUE = "test_llm_openai"
# Seconds the openai-provider worker waits on the fake server before counting a timeout.
LLM_TEST_TIMEOUT = 3


@pytest.fixture(scope="module")
def fake_llm():
    server = FakeLLM()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def llm_worker(fake_llm, django_db_setup, django_db_blocker):
    """A worker whose provider is `openai`, pointed at the loopback fake server (one task at a time)."""
    with django_db_blocker.unblock():
        worker = Worker(
            queues=[LLM_TEST_QUEUE, "knowledge_default", "notification_default"],
            concurrency=1,
            env={
                "LLM_PROVIDER": "openai",
                "LLM_BASE_URL": fake_llm.base_url,
                "LLM_API_KEY": "sk-test",
                "LLM_MODEL": "gpt-4o-mini",
                "LLM_TIMEOUT": str(LLM_TEST_TIMEOUT),
            },
        ).wait_ready()
    yield worker
    worker.stop(graceful=False)


@pytest.fixture
def webhook_receiver():
    receiver = WebhookReceiver()
    yield receiver
    receiver.stop()


@pytest.fixture
def user():
    return UserFactory(username="alice")


@pytest.fixture
def other_user():
    return UserFactory(username="bob")


@pytest.fixture
def staff_user():
    """An operator: staff, and granted the named permissions through a group."""
    from tests.tasks_app.api.conftest import grant_operator

    return grant_operator(StaffFactory(username="carol"))


@pytest.fixture
def api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


# Live replies (tests/conversations/test_streaming*.py): AI tasks sent to this queue are taken by
# a worker of the `openai` provider pointed at the fake server, on the threads pool `make run` uses.
STREAM_TEST_QUEUE = "test_llm_stream"


@pytest.fixture(scope="module")
def stream_worker(fake_llm, django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        worker = Worker(
            queues=[STREAM_TEST_QUEUE],
            pool="threads",
            concurrency=4,
            env={
                "LLM_PROVIDER": "openai",
                "LLM_BASE_URL": fake_llm.base_url,
                "LLM_API_KEY": "sk-test",
                "LLM_MODEL": "gpt-4o-mini",
                "LLM_TIMEOUT": str(LLM_TEST_TIMEOUT),
            },
        ).wait_ready()
    yield worker
    worker.stop(graceful=False)


@pytest.fixture(scope="module")
def web_server(django_db_setup, django_db_blocker):
    """The application under uvicorn (ASGI), on a free loopback port."""
    from tests.support.asgi_server import AsgiServer

    with django_db_blocker.unblock():
        server = AsgiServer().wait_ready()
    yield server
    server.stop()
