"""Token and cost budgets of API users (tenants) and their chat users.

Budgets are rows (conversations.models.Budget), edited in the admin: a default for everyone and
overrides per tenant or chat user, read on every check, so a change applies at once. Usage is the
ledger the system already keeps: the tokens and cost of saved replies (Message), plus what replies
being written have reserved (BudgetReservation).

- At submit (`budget_check`): past any budget, BudgetExceeded (the API answers 429
  `budget_exceeded` with Retry-After until the window resets).
- When a reply starts (`budget_reserve`), if a budget applies: under a per-tenant lock, what is left is worked out and
  the reply reserves its share: its prompt and a completion capped (max_tokens) to what is left.
  Replies running at once therefore share the rest instead of each seeing all of it, and the
  ledger can pass a budget by at most one reply's cap (the prompt is an estimate until reported).
- When it is saved (`budget_release`): the reservation goes, the ledger has the real figures.

Windows are UTC days and calendar months. Tasks sent from code (no tenant) have no budget.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from conversations import queries
from conversations.llm import discard_provider
from conversations.models import Budget, BudgetReservation, BudgetScope, Message, MessageRole
from conversations.tokens import completion_cost

if TYPE_CHECKING:
    from collections.abc import Callable

    from conversations.llm.base import ChatMessage, Completion, LLMProvider

# The pg_advisory_xact_lock class of budget reservations (one lock per tenant within it).
_LOCK_CLASS = 15_001
ZERO = Decimal(0)


@dataclass(frozen=True)
class Limits:
    tokens_per_day: int | None = None
    cost_per_day: Decimal | None = None
    cost_per_month: Decimal | None = None

    @property
    def any(self) -> bool:
        return any(value is not None for value in (self.tokens_per_day, self.cost_per_day, self.cost_per_month))


@dataclass(frozen=True)
class Spent:
    tokens_today: int = 0
    cost_today: Decimal = ZERO
    cost_this_month: Decimal = ZERO


@dataclass(frozen=True)
class Standing:
    """One subject's budget (an API user's, or a chat user's) against what it spent."""

    scope: str
    limits: Limits
    spent: Spent
    day_resets_at: datetime
    month_resets_at: datetime

    @property
    def remaining(self) -> dict:
        limits, spent = self.limits, self.spent
        return {
            "tokens_today": None
            if limits.tokens_per_day is None
            else max(0, limits.tokens_per_day - spent.tokens_today),
            "cost_today": None if limits.cost_per_day is None else max(ZERO, limits.cost_per_day - spent.cost_today),
            "cost_this_month": None
            if limits.cost_per_month is None
            else max(ZERO, limits.cost_per_month - spent.cost_this_month),
        }

    @property
    def exceeded(self) -> list[str]:
        """The windows used up: "tokens_per_day", "cost_per_day", "cost_per_month"."""
        names = {"tokens_today": "tokens_per_day", "cost_today": "cost_per_day", "cost_this_month": "cost_per_month"}
        return [names[key] for key, left in self.remaining.items() if left is not None and left <= 0]

    @property
    def resets_at(self) -> datetime | None:
        """When every used-up window has reset (None if none is)."""
        exceeded = self.exceeded
        if not exceeded:
            return None
        return self.month_resets_at if "cost_per_month" in exceeded else self.day_resets_at

    def as_dict(self) -> dict:
        limits = self.limits
        return {
            "scope": self.scope,
            "limits": {
                "tokens_per_day": limits.tokens_per_day,
                "cost_per_day": _money(limits.cost_per_day),
                "cost_per_month": _money(limits.cost_per_month),
            },
            "used": {
                "tokens_today": self.spent.tokens_today,
                "cost_today": _money(self.spent.cost_today),
                "cost_this_month": _money(self.spent.cost_this_month),
            },
            "remaining": {key: _money(value) for key, value in self.remaining.items()},
            "exceeded": self.exceeded,
        }


class BudgetExceeded(Exception):
    """A budget is used up: nothing more until `resets_at`."""

    def __init__(self, standings: list[Standing]) -> None:
        self.standings = standings
        super().__init__(self._describe())

    @property
    def refused_by(self) -> Standing:
        return next(standing for standing in self.standings if standing.exceeded)

    @property
    def resets_at(self) -> datetime:
        return max(standing.resets_at for standing in self.standings if standing.resets_at)

    def retry_after(self, now: datetime | None = None) -> int:
        return max(1, math.ceil((self.resets_at - (now or timezone.now())).total_seconds()))

    def _describe(self) -> str:
        refused = self.refused_by
        return f"budget exceeded: {refused.scope} {', '.join(refused.exceeded)} until {self.resets_at.isoformat()}"


def budget_standings(*, tenant_id: int | None, user_id: str, now: datetime | None = None) -> list[Standing]:
    """The API user's standing, then the chat user's (only those with a limit; none without a tenant)."""
    if tenant_id is None:
        return []
    api_limits, chat_limits = _limits(tenant_id=tenant_id, user_id=user_id)
    if not api_limits.any and not chat_limits.any:
        return []
    now = now or timezone.now()
    day, month = _window_starts(now)
    spent_by_tenant, spent_by_user = _spent(tenant_id=tenant_id, user_id=user_id, day=day, month=month, now=now)
    resets = {"day_resets_at": day + timedelta(days=1), "month_resets_at": _next_month(month)}
    standings = []
    if api_limits.any:
        standings.append(Standing(BudgetScope.API_USER, api_limits, spent_by_tenant, **resets))
    if chat_limits.any:
        standings.append(Standing(BudgetScope.CHAT_USER, chat_limits, spent_by_user, **resets))
    return standings


def budget_check(*, tenant_id: int | None, user_id: str) -> None:
    """Raise BudgetExceeded when the API user or the chat user has used up a budget."""
    standings = budget_standings(tenant_id=tenant_id, user_id=user_id)
    if any(standing.exceeded for standing in standings):
        raise BudgetExceeded(standings)


def budget_reserve(*, task_id: str, tenant_id: int | None, user_id: str, prompt_tokens: int) -> int | None:
    """Reserve this reply's share of what is left; return its completion cap (max_tokens).

    None: no budget applies (no cap, nothing reserved). Raises BudgetExceeded when not even one
    completion token is left. A second delivery of the same task replaces its reservation.
    """
    if tenant_id is None:
        return None
    if not any(limits.any for limits in _limits(tenant_id=tenant_id, user_id=user_id)):
        # No budget applies: no lock. Taking the tenant's lock for nothing made every reply of a
        # busy tenant queue on it, each holding a pooled connection while it waited, until the
        # worker's other threads starved for connections (bench/ANALYSIS.md, fifth round).
        queries.reservation_remove(task_id=task_id)  # a budget removed since a first delivery
        return None
    with transaction.atomic():
        with connection.cursor() as cursor:
            # Replies of one tenant reserve one at a time, each seeing the others' reservations.
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [_LOCK_CLASS, tenant_id % 2**31])
        BudgetReservation.objects.filter(task_id=task_id).delete()
        standings = budget_standings(tenant_id=tenant_id, user_id=user_id)
        if not standings:
            return None
        cap = _completion_cap(standings, prompt_tokens=prompt_tokens)
        if cap < 1:
            raise BudgetExceeded(standings)
        model = settings.LLM_MODEL
        BudgetReservation.objects.create(
            task_id=task_id,
            tenant_id=tenant_id,
            user_id=user_id,
            tokens=prompt_tokens + cap,
            cost=completion_cost(model=model, prompt_tokens=prompt_tokens, completion_tokens=cap),
        )
    return cap


def budget_release(*, task_id: str) -> None:
    queries.reservation_remove(task_id=task_id)


# The finish_reason of a reply that reached what was left of a budget while it was being written.
FINISH_BUDGET = "budget"


class CappedProvider:
    """The thread's provider, asked to write at most `max_tokens` (the budget's cap) per reply."""

    def __init__(self, provider: LLMProvider, max_tokens: int) -> None:
        self.provider = provider
        self.max_tokens = max_tokens
        self.name = provider.name
        self.model = getattr(provider, "model", "")

    def stream(
        self,
        messages: list[ChatMessage],
        *,
        temperature: float,
        on_text: Callable[[str], None],
        max_tokens: int | None = None,
    ) -> Completion:
        # LLMProvider's signature: a cap asked by the caller applies within the budget's, never above it.
        cap = self.max_tokens if max_tokens is None else min(max_tokens, self.max_tokens)
        completion = self.provider.stream(messages, temperature=temperature, on_text=on_text, max_tokens=cap)
        # Stopped at a cap below the usual reply length: the budget ended it, not the model's limit.
        if completion.finish_reason == "length" and cap == self.max_tokens and cap < settings.AI_REPLY_MAX_TOKENS:
            return replace(completion, finish_reason=FINISH_BUDGET)
        return completion

    def close(self) -> None:
        # Abandoning a call discards the thread's provider itself, so the next reply builds a new one.
        discard_provider(self.provider)


def capped(provider: LLMProvider, max_tokens: int | None) -> LLMProvider:
    return provider if max_tokens is None else CappedProvider(provider, max_tokens)


def _completion_cap(standings: list[Standing], *, prompt_tokens: int) -> int:
    """The most completion tokens the reply may write and stay within every budget."""
    cap = settings.AI_REPLY_MAX_TOKENS
    prompt_cost = completion_cost(model=settings.LLM_MODEL, prompt_tokens=prompt_tokens, completion_tokens=0)
    per_token = completion_cost(model=settings.LLM_MODEL, prompt_tokens=0, completion_tokens=1000) / 1000
    for standing in standings:
        remaining = standing.remaining
        if standing.exceeded:
            return 0
        if remaining["tokens_today"] is not None:
            cap = min(cap, remaining["tokens_today"] - prompt_tokens)
        for key in ("cost_today", "cost_this_month"):
            if remaining[key] is not None and per_token > 0:
                cap = min(cap, math.floor((remaining[key] - prompt_cost) / per_token))
    return cap


def replies_at_once(*, tenant_id: int | None, user_id: str) -> int:
    """How many of the chat user's replies may be in the workers' hands at once (0: no limit)."""
    if tenant_id is not None:
        row = _most_specific(
            tenant_id=tenant_id, user_id=user_id, have=lambda budget: budget.replies_at_once is not None
        ).get(BudgetScope.CHAT_USER)
        if row is not None and row.replies_at_once is not None:  # filtered on not null already
            return row.replies_at_once
    return settings.AI_MAX_CONCURRENT_PER_USER


def _most_specific(*, tenant_id: int, user_id: str, have: Callable[[Budget], bool] | None = None) -> dict[str, Budget]:
    """By scope, the row that applies: a chat user's over its tenant's over everyone's (among those `have` keeps)."""
    best: dict[str, tuple[int, Budget]] = {}
    for row in queries.budget_rows(tenant_id=tenant_id):
        if (row.user_id and row.user_id != user_id) or (have is not None and not have(row)):
            continue
        rank = (row.tenant_id is not None) + bool(row.user_id)
        if row.scope not in best or rank > best[row.scope][0]:
            best[row.scope] = (rank, row)
    return {scope: row for scope, (_rank, row) in best.items()}


def _limits(*, tenant_id: int, user_id: str) -> tuple[Limits, Limits]:
    """The API user's and the chat user's limits: the most specific row of each scope wins."""
    best = _most_specific(tenant_id=tenant_id, user_id=user_id)

    def limits(scope: str) -> Limits:
        row = best.get(scope)
        if row is None:
            return Limits()
        return Limits(row.tokens_per_day, row.cost_per_day, row.cost_per_month)

    return limits(BudgetScope.API_USER), limits(BudgetScope.CHAT_USER)


def _spent(*, tenant_id: int, user_id: str, day: datetime, month: datetime, now: datetime) -> tuple[Spent, Spent]:
    """What the tenant, and its chat user, spent this day and month: saved replies plus reservations."""
    today, mine = Q(created_at__gte=day), Q(conversation__user_id=user_id)
    ledger = Message.objects.filter(
        conversation__created_by_id=tenant_id, role=MessageRole.ASSISTANT, created_at__gte=month
    ).aggregate(
        tenant_tokens=Coalesce(Sum("prompt_tokens", filter=today), 0)
        + Coalesce(Sum("completion_tokens", filter=today), 0),
        tenant_cost_today=Coalesce(Sum("cost", filter=today), ZERO),
        tenant_cost_month=Coalesce(Sum("cost"), ZERO),
        user_tokens=Coalesce(Sum("prompt_tokens", filter=today & mine), 0)
        + Coalesce(Sum("completion_tokens", filter=today & mine), 0),
        user_cost_today=Coalesce(Sum("cost", filter=today & mine), ZERO),
        user_cost_month=Coalesce(Sum("cost", filter=mine), ZERO),
    )
    # Reservations of replies still being written (a dead worker's lapse after the task time limit).
    live = BudgetReservation.objects.filter(
        tenant_id=tenant_id, created_at__gte=now - timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT)
    )
    held = live.aggregate(
        tenant_tokens=Coalesce(Sum("tokens"), 0),
        tenant_cost=Coalesce(Sum("cost"), ZERO),
        user_tokens=Coalesce(Sum("tokens", filter=Q(user_id=user_id)), 0),
        user_cost=Coalesce(Sum("cost", filter=Q(user_id=user_id)), ZERO),
    )
    by_tenant = Spent(
        ledger["tenant_tokens"] + held["tenant_tokens"],
        ledger["tenant_cost_today"] + held["tenant_cost"],
        ledger["tenant_cost_month"] + held["tenant_cost"],
    )
    by_user = Spent(
        ledger["user_tokens"] + held["user_tokens"],
        ledger["user_cost_today"] + held["user_cost"],
        ledger["user_cost_month"] + held["user_cost"],
    )
    return by_tenant, by_user


def _window_starts(now: datetime) -> tuple[datetime, datetime]:
    day = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return day, day.replace(day=1)


def _next_month(month: datetime) -> datetime:
    return (month + timedelta(days=32)).replace(day=1)


def _money(value):
    """USD as a JSON number (as /status gives a reply's cost); tokens and None as they are."""
    return float(value) if isinstance(value, Decimal) else value
