"""The error a query node raises when it cannot be run, naming where in the node it went wrong."""

from __future__ import annotations


class QueryError(ValueError):
    """An invalid query node; `path` names the field inside the node (e.g. "series[1].math_property")."""

    def __init__(self, message: str, path: str = ""):
        super().__init__(message)
        self.message = message
        self.path = path

    def within(self, prefix: str) -> QueryError:
        """The same error with its path placed under `prefix`."""
        joined = (
            f"{prefix}.{self.path}" if self.path and not self.path.startswith("[") else f"{prefix}{self.path}"
        )
        return QueryError(self.message, joined if self.path else prefix)
