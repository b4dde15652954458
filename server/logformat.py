"""How the process writes log lines: text for people, or one JSON object per line for collectors."""

from __future__ import annotations

import datetime as dt
import json
import logging

from server import redaction, requestid

FORMATS = ("text", "json")
TEXT = "%(asctime)s %(levelname)s %(name)s request_id=%(request_id)s %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC, ISO 8601), level, logger, request_id, message and,
    when there is one, the exception's text. Records are scrubbed of secrets before they get here."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "request_id": getattr(record, "request_id", requestid.NONE),
            "message": record.getMessage(),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = record.stack_info
        return json.dumps(line, ensure_ascii=False)


def configure(level: str, fmt: str = "text") -> None:
    """Sets up the root logger once for the process: the level, the format, the request id on every
    record, and secret redaction (installed before anything can log a key, token or password)."""
    requestid.install()
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT))
    logging.basicConfig(level=level.upper(), handlers=[handler])
    redaction.install()
