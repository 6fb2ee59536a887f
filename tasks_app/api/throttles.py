"""Per-user rates of task submission (DRF throttling), by action: /ai/generate and /retry.

The rates are REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"][scope] ("120/min"; None for no limit),
counted per API user in the default cache (Redis, so shared by every web process). A throttled
request answers 429 with Retry-After, in the API's error shape (claw_ai.errors).
"""

from rest_framework.settings import api_settings
from rest_framework.throttling import ScopedRateThrottle

# View action -> throttle scope (the key of its rate).
SUBMIT_SCOPES = {"ai_generate": "ai_generate", "retry": "task_retry"}


class SubmitRateThrottle(ScopedRateThrottle):
    """ScopedRateThrottle whose scope is the view's action, reading the rates at request time.

    DRF's throttles copy the rates when the module is imported; reading them per request lets
    a changed setting (and a test's settings fixture) take effect at once.
    """

    def allow_request(self, request, view) -> bool:
        self.scope = SUBMIT_SCOPES.get(getattr(view, "action", None) or "")
        if not self.scope:
            return True
        self.rate = api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)
        self.num_requests, self.duration = self.parse_rate(self.rate)
        # SimpleRateThrottle.allow_request, skipping ScopedRateThrottle's own scope lookup.
        return super(ScopedRateThrottle, self).allow_request(request, view)
