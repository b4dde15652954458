"""How the SQL checks refuse: an invalid statement (QueryError naming `query`) or a part not built yet."""

from __future__ import annotations

from server.errors import Unimplemented
from server.queries.common.errors import QueryError

# The field of HogQLQuery holding the SQL text: every refusal of the text names it.
FIELD = "query"


def invalid(message: str) -> QueryError:
    """The caller's SQL is refused: `message` says what construct and where."""
    return QueryError(message, FIELD)


def later(what: str, field: str = FIELD) -> Unimplemented:
    """A part of SQL insights this service does not run yet (refused, never ignored)."""
    return Unimplemented(
        f"{field}: {what} {'are' if what.endswith('s') else 'is'} not implemented yet",
        reason="SQL_FEATURE_NOT_IMPLEMENTED",
        metadata={"field": field, "kind": "HogQLQuery"},
    )


def not_offered(field: str, what: str, why: str) -> Unimplemented:
    """An option of the reference that is not part of this service (refused, never ignored)."""
    return Unimplemented(
        f"{field}: {what} are not part of this service ({why})",
        reason="SQL_OPTION_NOT_OFFERED",
        metadata={"field": field, "kind": "HogQLQuery"},
    )
