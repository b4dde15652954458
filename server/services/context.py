"""The per-call context the interceptors fill in and the servicers read."""

from __future__ import annotations

from contextvars import ContextVar

from server.errors import Unauthenticated
from server.principal import Principal

current_principal: ContextVar[Principal | None] = ContextVar("current_principal", default=None)


def principal() -> Principal:
    """The authenticated caller of the current RPC."""
    found = current_principal.get()
    if found is None:
        # The auth interceptor runs before every servicer; reaching here means it was bypassed.
        raise Unauthenticated("no authenticated caller", reason="UNAUTHENTICATED")
    return found
