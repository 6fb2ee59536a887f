"""Callbacks go to public addresses only (SSRF): refused at submit when the URL says so, and at
delivery whatever the host name resolves to; WEBHOOK_ALLOWED_NETWORKS lets chosen networks in."""

import ipaddress

import pytest

from tasks_app.callback_addresses import is_allowed
from tasks_app.models import TaskRecord
from tasks_app.notifications import WebhookRejected, webhook_deliver
from tests.support.webhook_receiver import WebhookReceiver
from tests.tasks_app.api.conftest import API, GENERATE

pytestmark = pytest.mark.django_db(transaction=True)

DELAYED = {**GENERATE, "countdown": 3600}  # stays queued: no callback is sent during the test
INTERNAL = [
    "http://127.0.0.1:8080/hook",
    "http://localhost/hook",
    "http://10.1.2.3/hook",
    "http://192.168.0.10/hook",
    "http://169.254.169.254/latest/meta-data/",  # cloud metadata
    "http://[::1]/hook",
    "http://[::ffff:127.0.0.1]/hook",  # IPv4-mapped loopback
    "http://0.0.0.0/hook",
]


@pytest.fixture
def public_only(settings):
    settings.WEBHOOK_ALLOWED_NETWORKS = []


@pytest.fixture
def receiver():
    server = WebhookReceiver()
    yield server
    server.stop()


@pytest.mark.parametrize("url", INTERNAL)
def test_a_callback_to_an_internal_address_is_refused_at_submit(alice_client, public_only, url):
    response = alice_client.post(f"{API}/ai/generate", {**DELAYED, "callback_url": url}, format="json")

    assert response.status_code == 400
    (message,) = response.json()["errors"]["callback_url"]
    assert message.startswith("Callbacks go to public addresses only;")
    assert "is not one" in message
    assert not TaskRecord.objects.exists()


@pytest.mark.parametrize("url", ["http://8.8.8.8/hook", "https://hooks.example.com/claw?x=1"])
def test_public_addresses_and_host_names_are_accepted_at_submit(alice_client, public_only, url):
    response = alice_client.post(f"{API}/ai/generate", {**DELAYED, "callback_url": url}, format="json")

    assert response.status_code == 202
    assert TaskRecord.objects.get(task_id=response.json()["task_id"]).kwargs["callback_url"] == url


def test_the_refusal_is_explained_in_chinese(alice_client, public_only):
    response = alice_client.post(
        f"{API}/ai/generate",
        {**DELAYED, "callback_url": "http://10.0.0.1/hook"},
        format="json",
        HTTP_ACCEPT_LANGUAGE="zh-CN",
    )

    assert response.json()["errors"]["callback_url"] == ["回调只能发往公网地址；10.0.0.1 不是公网地址。"]


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_delivery_refuses_a_host_that_is_or_resolves_to_an_internal_address(receiver, public_only, host):
    # given a receiver on loopback, named by address or by a name that resolves to it
    url = receiver.url("/hook").replace("127.0.0.1", host)

    # when a callback is delivered there, then it is refused for good (no retry) and nothing was sent
    with pytest.raises(WebhookRejected, match="not a public address"):
        webhook_deliver(callback_url=url, document={"task_id": "t1", "status": "SUCCESS"})
    assert receiver.deliveries == []


def test_an_allowed_network_is_reached(receiver, settings):
    settings.WEBHOOK_ALLOWED_NETWORKS = [ipaddress.ip_network("127.0.0.0/8")]

    status = webhook_deliver(callback_url=receiver.url("/hook"), document={"task_id": "t1", "status": "SUCCESS"})

    assert status == 200
    assert [delivery.path for delivery in receiver.deliveries] == ["/hook"]


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("93.184.216.34", True),
        ("2606:4700::1111", True),
        ("100.64.0.1", False),  # carrier-grade NAT
        ("224.0.0.1", False),  # multicast
        ("::ffff:10.0.0.1", False),
        ("fd00::1", False),  # unique local
        ("fe80::1", False),  # link-local
    ],
)
def test_which_addresses_are_public(public_only, address, allowed):
    assert is_allowed(ipaddress.ip_address(address)) is allowed
