"""Token estimates and costs.

Providers report real token counts; estimates are only for budgeting the prompt (and for the
offline provider). Roughly: one token per CJK character, one per four other characters.
"""

import logging
from decimal import Decimal

from django.conf import settings

logger = logging.getLogger(__name__)


def estimate_tokens(text: str) -> int:
    wide = sum(1 for char in text if ord(char) > 0x2E7F)
    return max(1, wide + (len(text) - wide + 3) // 4) if text else 0


def completion_cost(*, model: str, prompt_tokens: int, completion_tokens: int) -> Decimal:
    """USD from the per-1,000-token price table LLM_PRICES; 0 for a model it does not list.

    Providers answer with dated names ("gpt-4o-mini-2024-07-18"): the longest listed prefix counts.
    """
    prices = settings.LLM_PRICES.get(model)
    if prices is None:
        prefixes = [name for name in settings.LLM_PRICES if model.startswith(name)]
        prices = settings.LLM_PRICES[max(prefixes, key=len)] if prefixes else None
    if prices is None:
        logger.warning("no price for model %r in LLM_PRICES; its cost is recorded as 0", model)
        return Decimal(0)
    cost = (
        Decimal(str(prices.get("prompt", 0))) * prompt_tokens
        + Decimal(str(prices.get("completion", 0))) * completion_tokens
    ) / 1000
    return cost.quantize(Decimal("0.000001"))
