"""A worker builds its LLM provider once before it consumes, so its first tasks do not import the SDK."""

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conversations import llm
from tasks_app.tasks.ai_tasks import warm_up_provider

ROOT = Path(__file__).resolve().parents[2]

# A fresh interpreter: this test process has long imported the OpenAI SDK.
WORKER_INIT = """
import sys
import django
django.setup()
from celery import signals
import tasks_app.tasks  # what the worker imports before it sends worker_init
assert "openai" not in sys.modules, "the SDK was imported before worker_init"
signals.worker_init.send(sender=None)
print("openai imported:", "openai" in sys.modules)
"""


@pytest.mark.worker  # a worker's Python process: left out of make test-fast
def test_worker_init_builds_the_configured_provider():
    # given a process configured for the OpenAI-compatible provider, with the SDK not yet imported
    env = {**os.environ, "LLM_PROVIDER": "openai", "LLM_BASE_URL": "http://127.0.0.1:9/v1", "LLM_API_KEY": "x"}

    # when the worker's start-up signal is sent
    result = subprocess.run(
        [sys.executable, "-c", WORKER_INIT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
    )

    # then the provider's SDK is loaded before any task asks for it
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "openai imported: True"


def test_a_provider_that_cannot_be_built_is_logged_and_the_worker_still_starts(settings, caplog):
    # given a misconfigured provider
    settings.LLM_PROVIDER = "no-such-provider"

    # when the worker starts (its worker_init receiver; sending the signal here would also
    # install Celery's Django fixup in the test process), then warm-up does not raise but says
    # what is wrong
    with caplog.at_level(logging.ERROR, logger="conversations.llm"):
        warm_up_provider()

    assert "could not build the LLM provider (LLM_PROVIDER='no-such-provider')" in caplog.text
    assert 'LLM_PROVIDER must be "offline" or "openai"' in caplog.text


def test_warm_up_leaves_no_provider_behind(settings):
    # a thread's kept provider is built on its first task, not by the warm-up in the main thread
    settings.LLM_PROVIDER = "offline"
    llm._per_thread.__dict__.clear()

    llm.warm_up()

    assert getattr(llm._per_thread, "provider", None) is None
