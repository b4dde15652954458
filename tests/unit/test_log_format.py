"""Log lines as text or JSON: each carries the request id of the call it came from, never a secret."""

from __future__ import annotations

import contextvars
import io
import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from server import redaction, requestid
from server.config import Settings
from server.errors import InvalidArgument
from server.logformat import TEXT, JsonFormatter

REPO = Path(__file__).resolve().parents[2]


Captured = tuple[logging.Logger, io.StringIO, "logging.StreamHandler[io.StringIO]"]


@pytest.fixture
def captured() -> Iterator[Captured]:
    requestid.install()
    redaction.install()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("insights.test.logformat")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield logger, stream, handler
    finally:
        logger.removeHandler(handler)


def test_a_json_line_names_the_call_and_holds_no_secret(captured: Captured) -> None:
    logger, stream, handler = captured
    handler.setFormatter(JsonFormatter())
    token = requestid.current.set("edge-42")
    try:
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("refused key phx_supersecretvalue for %s", "GetInsight")
    finally:
        requestid.current.reset(token)
    logger.info("between calls")
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["request_id"] == "edge-42" and first["level"] == "ERROR"
    assert first["logger"] == "insights.test.logformat"
    assert "GetInsight" in first["message"] and "supersecret" not in json.dumps(first)
    assert "ValueError: boom" in first["exception"]
    assert second["request_id"] == requestid.NONE and "exception" not in second


def test_a_text_line_shows_the_request_id(captured: Captured) -> None:
    logger, stream, handler = captured
    handler.setFormatter(logging.Formatter(TEXT))
    token = requestid.current.set("abc123")
    try:
        logger.info("rpc method=/x code=OK")
    finally:
        requestid.current.reset(token)
    assert "request_id=abc123 rpc method=/x code=OK" in stream.getvalue()


def test_the_ids_chosen_from_metadata() -> None:
    # In a context of its own, as each call has: what begin() sets must not reach other tests.
    contextvars.copy_context().run(_choose_ids)


def _choose_ids() -> None:
    assert requestid.begin([("x-request-id", "trace-1/2:3")]) == "trace-1/2:3"
    assert requestid.refused.get() is None
    fresh = requestid.begin([("authorization", "Bearer x")])
    assert len(fresh) == 32 and requestid.refused.get() is None
    assert requestid.begin([("x-request-id", "no spaces please")]) != "no spaces please"
    assert requestid.refused.get() == "no spaces please"
    requestid.begin([("x-request-id", "a"), ("x-request-id", "a")])
    assert requestid.refused.get() == "2 values"


def test_an_unknown_log_format_is_refused_naming_its_variable() -> None:
    with pytest.raises(InvalidArgument, match="INSIGHTS_LOG_FORMAT"):
        Settings.from_env({"INSIGHTS_LOG_FORMAT": "xml"}).validated()


def test_the_command_line_writes_json_lines(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "server", "migrate", "--log-format", "json", "--database-url", f"sqlite:///{tmp_path / 'm.db'}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    lines = [json.loads(line) for line in done.stderr.splitlines()]
    assert lines and all(line["request_id"] == "-" and line["level"] and line["message"] for line in lines)
    assert any("Running upgrade" in line["message"] for line in lines)
