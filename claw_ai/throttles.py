"""Per-user rates of the API's writes (DRF throttling), by view action.

A view names the scope of each of its writing actions in `throttle_scopes` (e.g. {"create":
"knowledge_write"}); actions it does not name (reads) are not throttled. The rates are
REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"][scope] ("120/min"; None for no limit), counted per API
user in the default cache (Redis, so shared by every web process). A throttled request answers
429 with Retry-After, in the API's error shape (claw_ai.errors).
"""

import math
from typing import cast

from rest_framework.settings import api_settings
from rest_framework.throttling import ScopedRateThrottle


class WriteRateThrottle(ScopedRateThrottle):
    """ScopedRateThrottle whose scope is looked up by the view's action, counting in fixed windows.

    DRF's throttles keep every request's timestamp in one cached list, read and written whole
    on each request: a chat backend submitting for all its users under one token needs a rate
    of thousands a minute, and then that list costs more than the rest of the request. Here
    each user has one counter per window of the rate's period (e.g. per minute), incremented
    atomically in the cache, so concurrent requests cannot both take the last place either.
    A fixed window lets a client use its rate at the end of one window and again at the start
    of the next. DRF's throttles also copy the rates when the module is imported; reading them
    per request lets a changed setting (and a test's settings fixture) take effect at once.
    """

    def allow_request(self, request, view) -> bool:
        scopes = getattr(view, "throttle_scopes", {})
        self.scope = scopes.get(getattr(view, "action", None) or "")
        if not self.scope:
            return True
        # Rates are strings such as "120/min" (drf-stubs types the settings' values as numbers).
        self.rate = cast("str | None", api_settings.DEFAULT_THROTTLE_RATES.get(self.scope))
        num_requests, duration = self.parse_rate(self.rate)
        if num_requests is None or duration is None:  # no rate for the scope: not throttled
            return True
        self.num_requests, self.duration = num_requests, duration
        self.key = self.get_cache_key(request, view)
        if self.key is None:
            return True
        self.now = self.timer()
        window = int(self.now // duration)
        self.window_ends_at = (window + 1) * duration
        return self._count(f"{self.key}:{window}", timeout=duration + 5) <= num_requests

    def _count(self, key: str, timeout: int) -> int:
        # claw_ai.cache.RedisCache (the default cache) counts in one round trip; any other cache
        # takes two steps. The counter outlives its window a little, so it cannot expire between them.
        if hasattr(self.cache, "count"):
            return self.cache.count(key, timeout)
        self.cache.add(key, 0, timeout=timeout)
        return self.cache.incr(key)

    def wait(self) -> float:
        """Seconds until the window ends (Retry-After)."""
        return max(1, math.ceil(self.window_ends_at - self.now))
