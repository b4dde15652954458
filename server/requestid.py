"""The id of the call being served: the caller's `x-request-id` when usable, else a new one."""

from __future__ import annotations

import contextvars
import logging
import re
import threading
import uuid
from collections.abc import Callable, Sequence
from typing import Any

HEADER = "x-request-id"
MAX_CHARS = 128
# What proxies and tracing systems put in the header (UUIDs, hex, base64, "svc/123:4"): letters,
# digits and a few separators. Anything else would end up verbatim in log lines and error details.
_USABLE = re.compile(rf"[A-Za-z0-9._:/+=@-]{{1,{MAX_CHARS}}}")
# Shown in log lines made outside a call (startup, the alert scheduler).
NONE = "-"

current: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
# The caller's header value when it was not usable: the call is refused (interceptors/validation.py)
# with the generated id in `current`, so that its log line and error still carry one.
refused: contextvars.ContextVar[str | None] = contextvars.ContextVar("refused_request_id", default=None)


def new() -> str:
    return uuid.uuid4().hex


def begin(metadata: Sequence[tuple[str, Any]] | None) -> str:
    """Sets the call's id from its metadata (the caller's when it sent one usable value, else a new
    one; an unusable or repeated header is recorded in `refused`) and returns it."""
    sent = [value for key, value in metadata or () if key == HEADER]
    chosen = sent[0] if len(sent) == 1 and isinstance(sent[0], str) and _USABLE.fullmatch(sent[0]) else None
    bad = None if chosen is not None or not sent else str(sent[0])[:MAX_CHARS] if len(sent) == 1 else f"{len(sent)} values"
    refused.set(bad)
    rid = chosen or new()
    current.set(rid)
    return rid


_installed: Callable[..., logging.LogRecord] | None = None
_lock = threading.Lock()


def install() -> None:
    """Every log record carries `request_id` (the current call's, else "-") for formats to show.
    Safe to call more than once."""
    global _installed
    with _lock:
        previous = logging.getLogRecordFactory()
        if previous is _installed:
            return

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            record.request_id = current.get() or NONE
            return record

        logging.setLogRecordFactory(factory)
        _installed = factory
