"""Engine errors of a caller's statement: which limit tripped (RESOURCE_EXHAUSTED), or the engine's
message about the statement (INVALID_ARGUMENT), cleaned of the SQL and names the service added."""

from __future__ import annotations

import re

# Engine error codes of a limit a SQL insight runs under, and the limit each one names.
LIMIT_CODES = {
    159: "max_execution_time",  # TIMEOUT_EXCEEDED
    241: "max_memory_usage",  # MEMORY_LIMIT_EXCEEDED
    158: "max_rows_to_read",  # TOO_MANY_ROWS
    396: "max_result_rows",  # TOO_MANY_ROWS_OR_BYTES
    307: "max_bytes_to_read",  # TOO_MANY_BYTES
}
_CODE = re.compile(r"Code: (\d+)\.")
# What follows the engine's first sentence: the statement, stack traces, versions.
_TAIL = re.compile(
    r"(\.?\s*\(version [^)]*\).*$|\.?\s*\(?in query:? .*$|\.?\s*in scope .*$|:? While processing .*$"
    r"|\.?\s*Stack trace.*$|\.?\s*Maybe you meant.*$)",
    re.S | re.I,
)
_PREFIX = re.compile(r"^.*?Code: \d+\. DB::Exception: ", re.S)
# Names the rewrite introduced, spelled the way the engine prints them.
_INTERNAL = re.compile(r"`?__[A-Za-z0-9_]+`?\.?|\{__[a-z_0-9]+:[^}]*\}|_CAST\([^)]*\)|team_id")
_SPACES = re.compile(r"\s+")
_MAX_MESSAGE = 500


def engine_code(error: BaseException) -> int | None:
    """The engine's error code, from the client error or its text."""
    code = getattr(error, "code", None)
    if isinstance(code, int):
        return code
    found = _CODE.search(str(error))
    return int(found.group(1)) if found else None


def tripped_limit(error: BaseException) -> str | None:
    """The limit an engine error reports as exceeded, or None."""
    code = engine_code(error)
    return LIMIT_CODES.get(code) if code is not None else None


def cleaned_message(error: BaseException) -> str:
    """The engine's sentence about the statement, without the SQL text, stack trace or the names and
    parameters the service's rewrite added (a caller sees only what it wrote)."""
    text = _PREFIX.sub("", str(error), count=1)
    text = _TAIL.sub("", text)
    # SQL quoted by the engine is (also) the service's rewrite: never shown.
    text = text.split("SELECT ", 1)[0].rstrip(" :(")
    text = _INTERNAL.sub("", text)
    text = _SPACES.sub(" ", text).strip()
    if len(text) > _MAX_MESSAGE:
        text = text[:_MAX_MESSAGE] + "…"
    return text or "the engine refused the statement"
