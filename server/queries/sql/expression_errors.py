"""An engine error of a statement holding the caller's HogQL expressions made theirs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from server.queries.base import Execute
from server.queries.common.errors import QueryError
from server.queries.sql.expression import engine_refusal
from storage.events import QueryCancelled, is_cancellation


def refusing(execute: Execute, paths: tuple[str, ...]) -> Execute:
    """`execute`, an engine error of a statement holding the caller's expressions (`paths`, their
    fields) being theirs: INVALID_ARGUMENT naming the first field (all of them in the message when
    there are several), as funnels do; the rest of the statement is the service's, checked.
    Cancellations and tripped limits stay the service's."""
    if not paths:
        return execute

    def run(*args: Any, **kwargs: Any) -> Sequence[Sequence[Any]]:
        try:
            return execute(*args, **kwargs)
        except QueryCancelled:
            raise
        except Exception as exc:
            refused = None if is_cancellation(exc) else engine_refusal(exc, paths[0])
            if refused is None:
                raise
            if len(paths) > 1:
                refused = QueryError(f"{refused.message} (one of the expressions of {', '.join(paths)})", paths[0])
            raise refused from None

    return run
