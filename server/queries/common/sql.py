"""Bound query parameters: the only way a user value reaches generated SQL."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

# ClickHouse type names we bind with: letters, digits, parentheses, commas, quotes (for a time zone
# argument such as DateTime64(6, 'UTC')), spaces and underscores. Never user text.
_TYPE = re.compile(r"^[A-Za-z][A-Za-z0-9_(), ']*$")


class Params:
    """Collects server-side bound parameters; `bind` returns the `{name:Type}` placeholder to put in SQL.

    Names are generated (`p0`, `p1`, ...), never derived from user input, so the SQL text holds no
    user string at all; `values` goes to `client.query(sql, parameters=values)`.
    """

    def __init__(self, prefix: str = "p", *, columns: Mapping[str, str] | None = None) -> None:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", prefix):
            raise ValueError(f"bad parameter prefix {prefix!r}")
        self._prefix = prefix
        self.values: dict[str, Any] = {}
        # Event property key → a materialized column holding its text (names from configuration).
        self.columns: Mapping[str, str] = columns or {}
        # Field paths of the caller's HogQL expressions compiled into the statement (hogql property
        # filters): an engine error about it is then the caller's (expression.run_statement).
        self.expressions: list[str] = []

    def bind(self, value: Any, ch_type: str) -> str:
        """Records `value` and returns its placeholder, e.g. `{p3:String}`."""
        if not _TYPE.match(ch_type) or "{" in ch_type or "}" in ch_type:
            raise ValueError(f"bad ClickHouse type {ch_type!r}")
        name = f"{self._prefix}{len(self.values)}"
        self.values[name] = value
        return f"{{{name}:{ch_type}}}"

    def __len__(self) -> int:
        return len(self.values)
