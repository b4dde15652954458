"""The SQL dialect callers write: ClickHouse, plus `$` inside names (`properties.$browser`)."""

from __future__ import annotations

from typing import ClassVar

from sqlglot import exp
from sqlglot.dialects.clickhouse import ClickHouse
from sqlglot.tokenizer_core import Token, TokenType


class InsightSQL(ClickHouse):
    """ClickHouse as sqlglot reads it, except that `$` is part of a name (as in the reference's
    HogQL) instead of opening a `$$…$$` string, which no saved query uses."""

    class Tokenizer(ClickHouse.Tokenizer):
        HEREDOC_STRINGS: ClassVar[list[str | tuple[str, str]]] = []
        SINGLE_TOKENS: ClassVar[dict[str, TokenType]] = {
            k: v for k, v in ClickHouse.Tokenizer.SINGLE_TOKENS.items() if k != "$"
        }
        VAR_SINGLE_TOKENS: ClassVar[set[str]] = {"$"}


def tokens(sql: str) -> list[Token]:
    """The tokens of `sql` (comments dropped); sqlglot's TokenError when it cannot be tokenized."""
    return InsightSQL().tokenize(sql)


def parse(sql: str) -> list[exp.Expr | None]:
    """The statements of `sql`; sqlglot's ParseError/TokenError when it cannot be parsed."""
    return InsightSQL().parse(sql)


def parse_tokens(found: list[Token], sql: str) -> list[exp.Expr | None]:
    """The statements of already read (and possibly rewritten) tokens of `sql`; as `parse`."""
    return InsightSQL().parser().parse(found, sql)


def render(tree: exp.Expr, *, copy: bool = True) -> str:
    """The SQL the engine runs: printed from the tree alone (never the caller's text, and without
    its comments), every name quoted, so the engine reads exactly what was checked. `copy=False`
    spares copying the tree first, for a tree nothing reads afterwards (printing may rewrite it)."""
    return InsightSQL().generate(tree, copy=copy, identify=True, comments=False, pretty=False)
