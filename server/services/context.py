"""The per-call context the interceptors fill in and the servicers read."""

from __future__ import annotations

from contextvars import ContextVar

from server.errors import Unauthenticated
from server.principal import Principal, SharePrincipal

current_principal: ContextVar[Principal | None] = ContextVar("current_principal", default=None)
# Set instead of current_principal when a sharing credential authenticated the call.
current_share: ContextVar[SharePrincipal | None] = ContextVar("current_share", default=None)


def principal() -> Principal:
    """The authenticated caller of the current RPC."""
    found = current_principal.get()
    if found is None:
        # The auth interceptor runs before every servicer; reaching here means it was bypassed.
        raise Unauthenticated("no authenticated caller", reason="UNAUTHENTICATED")
    return found


def share_principal() -> SharePrincipal:
    """The sharing credential's viewer of the current RPC (methods flagged `sharing_access`)."""
    found = current_share.get()
    if found is None:
        raise Unauthenticated(
            "this method needs a sharing credential: send 'x-sharing-access-token' (the link's token) "
            "or 'x-share-token' (from UnlockSharedInsight) metadata",
            reason="MISSING_SHARING_CREDENTIAL",
        )
    return found
