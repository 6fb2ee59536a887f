"""Keep users' message text out of worker logs: ids, sizes and timings only.

Celery's worker logs each task's return value ("Task ...[id] succeeded in 0.2s: {...}"), and the
AI task returns the reply text; a retry or failure logs the exception, whose message can quote a
provider's answer or a user's input; the log record of a received task carries its arguments
(not printed by the default format, but handed to any structured handler as `record.data`).
Logs are shipped and kept more widely than the database: the full result, error and traceback
stay in the task record, which only the owner (API) and staff (admin) can read.

`MessageTextFilter` sits on Celery's task loggers (LOGGING in claw_ai.settings.base, which
leaves it out when LOG_MESSAGE_TEXT=true, for debugging). A filter on the logger itself, not on a
handler, survives Celery's hijacking of the root logger's handlers in the worker, and prefork
children inherit it.
"""

import json
import logging
import re
import threading
import traceback
from collections.abc import Mapping

from celery.signals import task_success

# A quoted string literal inside a repr; the closing quote is optional so the pattern never fails
# (and never backtracks) on a repr cut short.
_QUOTED = re.compile(r"""'[^'\\]*(?:\\.[^'\\]*)*'?|"[^"\\]*(?:\\.[^"\\]*)*"?""", re.DOTALL)
# Context keys Celery fills with argument or traceback text (not in its message formats).
_TEXT_KEYS = ("args", "kwargs", "traceback")

_last_result = threading.local()


@task_success.connect(dispatch_uid="claw_ai.log_redaction.remember_result")
def _remember_result(sender=None, result=None, **_kwargs) -> None:
    """Celery logs only a repr of the result, cut at 1,024 characters; the summary is made from the
    value itself, which this signal hands over in the same thread just before the success is logged."""
    if logging.getLogger("celery.app.trace").isEnabledFor(logging.INFO):  # else no line will take it back
        _last_result.task_id, _last_result.value = sender.request.id, result


def describe(value) -> str:
    """A value's shape and size, without its text: `<dict: 6 keys, 1234 chars>`."""
    if value is None or isinstance(value, (bool, int, float)):
        return repr(value)  # numbers and flags are not message text
    try:
        size = len(json.dumps(value, ensure_ascii=False, default=str))
    except (TypeError, ValueError):
        size = len(repr(value))
    if isinstance(value, Mapping):
        return f"<dict: {len(value)} keys, {size} chars>"
    if isinstance(value, (list, tuple)):
        return f"<list: {len(value)} items, {size} chars>"
    return f"<{type(value).__name__}: {size} chars>"


def without_quoted_text(text: str) -> str:
    """`Retry in 5s: ValueError('hello')` -> `Retry in 5s: ValueError(<5 chars>)`."""
    return _QUOTED.sub(lambda match: f"<{max(len(match.group()) - 2, 0)} chars>", text)


def traceback_without_messages(exc: BaseException) -> str:
    """The traceback as Python prints it (chained exceptions too), each message replaced by its size.

    Frames show code, not values, so only the exception lines can carry text.
    """
    chain: list[BaseException] = []
    links: list[str] = []
    current: BaseException | None = exc
    while current is not None and all(current is not seen for seen in chain):
        chain.append(current)
        if current.__cause__ is not None:
            current, link = current.__cause__, "The above exception was the direct cause of the following exception:"
        elif current.__context__ is not None and not current.__suppress_context__:
            current, link = current.__context__, "During handling of the above exception, another exception occurred:"
        else:
            current, link = None, ""
        links.append(link)
    parts = []
    for error, link in zip(reversed(chain), reversed(links), strict=True):
        if link:
            parts.append(f"\n{link}\n\n")
        parts.append("Traceback (most recent call last):\n" + "".join(traceback.format_tb(error.__traceback__)))
        name = type(error).__qualname__
        module = type(error).__module__
        parts.append(f"{name if module == 'builtins' else f'{module}.{name}'}: <{len(str(error))} chars>\n")
    return "".join(parts).rstrip("\n")


class MessageTextFilter(logging.Filter):
    """Rewrites a record's arguments so the formatted line carries no message text; drops nothing."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, Mapping):
            record.args = self._context(record.args)
            if isinstance(getattr(record, "data", None), Mapping):
                record.data = record.args  # Celery hands the same context to handlers as `data`
        elif isinstance(record.args, tuple):
            record.args = tuple(
                without_quoted_text(repr(arg)) if isinstance(arg, BaseException) else arg for arg in record.args
            )
        if record.exc_info and isinstance(record.exc_info, tuple) and record.exc_info[1] is not None:
            record.exc_text = traceback_without_messages(record.exc_info[1])  # formatters use it as is
        return True

    def _context(self, context: Mapping) -> dict:
        redacted = dict(context)
        if "return_value" in redacted:
            redacted["return_value"] = self._result_summary(redacted)
        if isinstance(redacted.get("exc"), str):
            redacted["exc"] = without_quoted_text(redacted["exc"])
        for key in _TEXT_KEYS:
            if isinstance(redacted.get(key), str):
                redacted[key] = f"<{len(redacted[key])} chars>"
        return redacted

    @staticmethod
    def _result_summary(context: Mapping) -> str:
        task_id, value = getattr(_last_result, "task_id", None), getattr(_last_result, "value", None)
        _last_result.task_id = _last_result.value = None  # hold no result past its log line
        if task_id is not None and task_id == context.get("id"):
            return describe(value)
        return f"<repr: {len(str(context['return_value']))} chars>"
