"""Read capacity limits from the environment, refusing a bad one at start-up with a clear message.

A limit typed wrong (a minus sign, a unit, a figure off by a thousand) must stop the process
that reads it, naming the variable and what would be accepted, rather than run unlimited or
stalled. Empty or unset means "no limit" where a limit is optional.
"""

import os
import re

from django.core.exceptions import ImproperlyConfigured

# "10/m": Celery's rate syntax (per second, minute or hour); "10/min" as DRF writes it, too.
_RATE = re.compile(r"^\s*(\d+)\s*/\s*([smh])[a-z]*\s*$")
_RATE_SECONDS = {"s": 1, "m": 60, "h": 3600}


def optional_limit(name: str, *, maximum: int, minimum: int = 1) -> int | None:
    """A whole number between `minimum` and `maximum` from the variable `name`; None when unset or empty."""
    raw = (os.environ.get(name) or "").strip()
    if not raw:
        return None
    return _checked(name, raw, minimum=minimum, maximum=maximum)


def number(name: str, *, default: float, minimum: float, maximum: float) -> float:
    """A number between `minimum` and `maximum` from the variable `name` (the default when unset)."""
    raw = (os.environ.get(name) or "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a number (expected {minimum} to {maximum})") from None
    if not minimum <= value <= maximum:
        raise ImproperlyConfigured(f"{name}={raw!r} is out of range: expected {minimum} to {maximum}")
    return value


def parse_rate(name: str, raw: str | None, *, maximum_per_second: float = 10_000) -> tuple[int, int] | None:
    """("10/m" -> (10, 60)): a count and its window in seconds; None for empty. Refuses anything else."""
    raw = (raw or "").strip()
    if not raw:
        return None
    match = _RATE.match(raw)
    if not match:
        raise ImproperlyConfigured(
            f'{name}={raw!r} is not a rate: write a count per second, minute or hour, like "10/m" (empty = no limit)'
        )
    count, window = int(match[1]), _RATE_SECONDS[match[2]]
    if count < 1 or count / window > maximum_per_second:
        raise ImproperlyConfigured(
            f"{name}={raw!r} is out of range: at least 1 and at most {maximum_per_second:g} a second (empty = no limit)"
        )
    return count, window


def _checked(name: str, raw: str, *, minimum: int, maximum: int) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(
            f"{name}={raw!r} is not a whole number (expected {minimum} to {maximum:,}; empty = no limit)"
        ) from None
    if not minimum <= value <= maximum:
        raise ImproperlyConfigured(
            f"{name}={raw!r} is out of range: expected {minimum} to {maximum:,} (empty = no limit)"
        )
    return value
