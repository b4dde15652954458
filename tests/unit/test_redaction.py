"""The log redaction: keys, share tokens, sharing access tokens and passwords never reach a log line."""

from __future__ import annotations

import io
import logging
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from server import redaction
from server.redaction import REDACTED, redact

KEY = "phx_Q2hhbmdlIG1lIGFuZCBJIHdpbGwga25vdyBpdCB3YXMgeW91"
TOKEN = "Zm9yLWEtc2hhcmVkLWxpbmstb25seQ"
PASSWORD = "correct horse battery"


@pytest.mark.parametrize(
    "text",
    [
        f"Invalid encoding on b'Bearer {KEY}\\xff'",
        f"Invalid encoding on b'Bearer {KEY[:10]}\\xc3({KEY[10:]}'",
        f"authorization: Bearer {KEY}",
        f"(('authorization', 'Bearer {KEY}'),)",
        f"key {KEY} was revoked",
        f"[{KEY}]",
        f"Bearer {KEY[4:]}",
    ],
)
def test_api_keys_are_removed_whole_wherever_they_appear(text: str) -> None:
    scrubbed = redact(text)
    assert KEY[4:] not in scrubbed and KEY[10:] not in scrubbed and KEY[4:10] not in scrubbed
    assert REDACTED in scrubbed
    assert redact(scrubbed) == scrubbed  # idempotent: scrubbing twice changes nothing


@pytest.mark.parametrize(
    "text",
    [
        f"x-share-token: {TOKEN}",
        f"x-sharing-access-token={TOKEN}",
        f"(('x-share-token', '{TOKEN}'), ('user-agent', 'grpc'))",
        f"_Metadatum(key='x-sharing-access-token', value='{TOKEN}')",
        f'access_token: "{TOKEN}"',
        f'{{"share_token": "{TOKEN}", "insight": 7}}',
        f"GET /shared?token={TOKEN}&x=1",
        f"authorization: Basic {TOKEN}",
    ],
)
def test_share_tokens_are_removed_in_headers_fields_and_urls(text: str) -> None:
    scrubbed = redact(text)
    assert TOKEN not in scrubbed and REDACTED in scrubbed
    assert redact(scrubbed) == scrubbed


@pytest.mark.parametrize(
    "text",
    [
        f'password: "{PASSWORD}"',
        f'raw_password: "{PASSWORD}"\nnote: "kept"',
        f'{{"password": "{PASSWORD}"}}',
        f"password='{PASSWORD}'",
        "postgresql+psycopg://insights:s3cr3t-pw@127.0.0.1:5432/insights",
    ],
)
def test_passwords_are_removed(text: str) -> None:
    scrubbed = redact(text)
    assert PASSWORD not in scrubbed and "s3cr3t-pw" not in scrubbed and REDACTED in scrubbed


def test_ordinary_lines_are_left_alone() -> None:
    for text in [
        "rpc method=/insights.v1.SharingService/UnlockSharedInsight code=UNAUTHENTICATED duration_ms=4.1 "
        "environment=- key_id=42",
        "Incorrect password",
        "password_required: true",
        "invalid token, retry",
        "clickhouse at http://127.0.0.1:8123/ is not ready",
    ]:
        assert redact(text) == text


@pytest.fixture
def installed() -> Iterator[io.StringIO]:
    """The redaction installed, and a logger with its own handler added afterwards."""
    previous = logging.getLogRecordFactory()
    redaction.install()
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    loggers = [logging.getLogger(name) for name in ("grpc._cython.cygrpc", "test.redaction")]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
    try:
        yield out
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
            logger.setLevel(logging.NOTSET)
        logging.setLogRecordFactory(previous)


def test_grpc_raw_header_values_are_withheld_whatever_their_shape(installed: io.StringIO) -> None:
    raw = TOKEN.encode() + b"\xff"  # a share token has no recognisable shape of its own
    try:
        raw.decode("utf8")
    except UnicodeDecodeError:
        # What grpc does (grpc_string.pyx.pxi `_decode`), through its own logger.
        logging.getLogger("grpc._cython.cygrpc").exception("Invalid encoding on %s", raw)
    text = installed.getvalue()
    assert "Invalid encoding on <31 bytes withheld>" in text
    assert "UnicodeDecodeError" in text  # the traceback stays
    assert TOKEN not in text


class _Keep(logging.Handler):
    """Keeps the records it is handed."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_messages_arguments_and_tracebacks_are_scrubbed_for_every_handler(installed: io.StringIO) -> None:
    log = logging.getLogger("test.redaction")
    log.info("calling with %s", (("authorization", f"Bearer {KEY}"),))
    try:
        raise ValueError(f"cannot verify password={PASSWORD!r} for {KEY}")
    except ValueError:
        log.error("verification failed", exc_info=True)
        catcher = _Keep()
        log.addHandler(catcher)
        log.warning("again", exc_info=sys.exc_info())
        log.removeHandler(catcher)
    text = installed.getvalue()
    assert "calling with" in text and "verification failed" in text and "ValueError" in text
    assert KEY[4:] not in text and PASSWORD not in text
    # The exception object still holds the secret: no handler gets it to render again.
    (again,) = catcher.records
    assert again.exc_info is None and again.exc_text and "ValueError" in again.exc_text
    assert KEY[4:] not in again.exc_text


def test_install_is_idempotent_and_keeps_the_previous_factory() -> None:
    previous = logging.getLogRecordFactory()
    seen: list[str] = []

    def tagging(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = logging.LogRecord(*args, **kwargs)  # an earlier factory of some library
        seen.append(record.getMessage())
        return record

    logging.setLogRecordFactory(tagging)
    try:
        redaction.install()
        redaction.install()
        record = logging.getLogRecordFactory()("x", logging.INFO, __file__, 1, "key %s", (KEY,), None)
        assert record.getMessage() == "key phx_" + REDACTED
        assert seen == [f"key {KEY}"]  # the factory that was there still runs, once
    finally:
        logging.setLogRecordFactory(previous)
