"""Keeps secrets out of every log line: API keys, share tokens, sharing access tokens and passwords."""

from __future__ import annotations

import logging
import re
import threading
import traceback
from collections.abc import Callable
from typing import Any

REDACTED = "[REDACTED]"

# A character that ends a bare secret: whitespace, quotes and the punctuation that closes a value in
# reprs, URLs and key=value text. Backslashes are *not* in it: `b'phx_ab\xffcd'` must go as a whole.
_END = r"\s'\"`,;)}\]>&"

# Names under which a secret travels: metadata headers, request fields, settings and URL parameters.
_SECRET_NAMES = (
    "authorization",
    "x-share-token",
    "x-sharing-access-token",
    "share_token",
    "share-token",
    "sharing_access_token",
    "access_token",
    "access-token",
    "token",
    "raw_password",
    "password",
    "passwd",
    "api_key",
    "api-key",
    "apikey",
    "secret",
)

_NAME = r"(?i)(?<![\w-])({names})(?![\w-])"
# What joins a name to its value: `: `, `=`, `": "`, and after a quoted name also `', '` and grpc's
# `', value='` (a bare comma is prose: "invalid token, retry").
_SEPARATOR = r"((?:['\"]\s*(?:[:=]|,|=>)|\s*(?:[:=]|=>))\s*(?:value\s*=\s*)?)"
_QUOTED = r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|b'(?:[^'\\]|\\.)*'"
# A value already redacted by an earlier pattern is taken whole, so that redacting stays idempotent.
_BARE = rf"(?:phx_)?\[REDACTED\]|[^{_END}]+"

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # Personal API keys carry a prefix, so they are recognised anywhere, even without a name.
    (re.compile(rf"phx_(?!\[REDACTED\])[^{_END}]*"), "phx_" + REDACTED),
    # An authorization header's whole value, its scheme included (`Basic dXNlcjpwYXNz`).
    (
        re.compile(
            _NAME.format(names="authorization") + _SEPARATOR + rf"(?:{_QUOTED}|(?:[A-Za-z]+ +)?(?:{_BARE}))"
        ),
        r"\1\2" + REDACTED,
    ),
    # `Bearer <credential>` wherever it appears without its header name.
    (re.compile(rf"(?i)\b(bearer)(\s+)(?:{_BARE})"), rf"\1\2{REDACTED}"),
    # name, separator, then a quoted value (to its closing quote) or a bare one: covers protobuf text
    # (`password: "x"`), JSON (`"password": "x"`), key=value, HTTP headers (`x-share-token: x`), metadata
    # tuples (`('x-share-token', 'x')`) and grpc's `_Metadatum(key='x-share-token', value='x')`.
    (
        re.compile(
            _NAME.format(names="|".join(re.escape(n) for n in _SECRET_NAMES))
            + _SEPARATOR
            + rf"(?:{_QUOTED}|{_BARE})"
        ),
        r"\1\2" + REDACTED,
    ),
    # Passwords in URLs (`postgresql://user:secret@host`): the user stays, the password goes.
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^/\s:@]*:)[^@\s/]+@"), rf"\1{REDACTED}@"),
)


# Every pattern above needs one of these (lowercased) in the text: most lines have none, and checking
# for them costs a fraction of running the patterns (the access log writes one line per call).
_TRIGGERS = ("phx_", "bearer", "authorization", "token", "passw", "secret", "api", "://")


def redact(text: str) -> str:
    """`text` with every recognised secret replaced by [REDACTED]."""
    lowered = text.lower()
    if not any(trigger in lowered for trigger in _TRIGGERS):
        return text
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _withhold_bytes(value: Any) -> Any:
    # grpc logs raw header values as bytes (`Invalid encoding on b'Bearer phx_...'`); the value may be
    # any credential, with or without a recognisable shape, so none of it is repeated.
    if isinstance(value, bytes | bytearray):
        return f"<{len(value)} bytes withheld>"
    return value


def redact_record(record: logging.LogRecord) -> logging.LogRecord:
    """Scrubs a record in place (message, arguments, exception and stack text); idempotent."""
    if getattr(record, "_secrets_redacted", False):
        return record
    record._secrets_redacted = True
    if record.name == "grpc" or record.name.startswith("grpc."):
        if isinstance(record.args, tuple):
            record.args = tuple(_withhold_bytes(arg) for arg in record.args)
        elif isinstance(record.args, dict):
            record.args = {key: _withhold_bytes(arg) for key, arg in record.args.items()}
    try:
        message = record.getMessage()
    except Exception:
        # A broken format string: keep what was meant, scrubbed, instead of failing the caller.
        message = f"{record.msg!s} {record.args!r}"
        record.args = None
        record.msg = message
    scrubbed = redact(message)
    if scrubbed != message:
        record.msg, record.args = scrubbed, None
    if record.exc_info and record.exc_info[0] is not None and not record.exc_text:
        text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
        record.exc_text = redact(text)
        if record.exc_text != text:
            # The exception itself holds the secret (in its args or message): no handler may render it
            # again from the original, so only the scrubbed text stays on the record.
            record.exc_info = None
    elif record.exc_text:
        record.exc_text = redact(record.exc_text)
    if record.stack_info:
        record.stack_info = redact(record.stack_info)
    return record


class RedactingFilter(logging.Filter):
    """A handler filter that scrubs every record passing through (it never drops one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        redact_record(record)
        return True


_installed_factory: Callable[..., logging.LogRecord] | None = None
_lock = threading.Lock()


def install() -> None:
    """Scrubs every log record of the process, whatever logger made it and whichever handler shows it.

    Records are scrubbed when they are created (a record factory), so handlers added later (a test's
    log capture, a library's own handler) never see a secret either; the root logger's handlers also
    get the filter, for records made outside the factory. Safe to call more than once.
    """
    global _installed_factory
    with _lock:
        current = logging.getLogRecordFactory()
        if current is not _installed_factory:
            previous = current

            def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
                return redact_record(previous(*args, **kwargs))

            logging.setLogRecordFactory(factory)
            _installed_factory = factory
        for handler in logging.getLogger().handlers:
            if not any(isinstance(f, RedactingFilter) for f in handler.filters):
                handler.addFilter(RedactingFilter())
