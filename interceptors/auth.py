"""API-key and sharing-credential authentication, with the policy each method declares in the proto."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

import grpc
from google.protobuf.descriptor import ServiceDescriptor

from generated.insights.v1 import options_pb2
from interceptors.wrap import CallInterceptor
from server.domain.sharing import ACCESS_TOKEN_HEADER, SHARE_TOKEN_HEADER
from server.errors import PermissionDenied, Unauthenticated
from server.principal import Principal, SharePrincipal, missing_scope
from server.services.context import current_principal, current_share

# Services that answer without a key: health checks and schema reflection (grpcurl sends its
# headers on reflection calls too, so these must not insist on one).
OPEN_PREFIXES = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)


def method_policies(services: Iterable[ServiceDescriptor]) -> dict[str, options_pb2.MethodPolicy]:
    """`/package.Service/Method` → its declared policy. Fails start-up if one of ours has none."""
    policies = {}
    for service in services:
        for method in service.methods:
            # A method without the option reads as an empty policy, refused just below.
            policy = method.GetOptions().Extensions[options_pb2.policy]
            if not (policy.required_scopes or policy.public or policy.sharing_access):
                raise RuntimeError(
                    f"{service.full_name}.{method.name} declares no required scopes, public or sharing access"
                )
            if policy.public and (policy.required_scopes or policy.sharing_access):
                raise RuntimeError(
                    f"{service.full_name}.{method.name} is public but also declares access rules"
                )
            policies[f"/{service.full_name}/{method.name}"] = policy
    return policies


class KeyCache:
    """Verified keys for a few seconds, so a hot path does not ask the database on every call."""

    def __init__(
        self, ttl_seconds: float, max_entries: int = 10_000, clock: Callable[[], float] = time.monotonic
    ):
        self.ttl = ttl_seconds
        self.max_entries = max_entries
        # Seconds on a monotonic scale; tests replace it to expire entries without waiting.
        self.clock = clock
        self._entries: dict[str, tuple[float, Principal]] = {}

    def get(self, key: str) -> Principal | None:
        found = self._entries.get(key)
        if found is None:
            return None
        if found[0] < self.clock():
            del self._entries[key]
            return None
        return found[1]

    def put(self, key: str, principal: Principal) -> None:
        if self.ttl <= 0:
            return
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
        self._entries[key] = (self.clock() + self.ttl, principal)


class AuthInterceptor(CallInterceptor):
    """Authenticates the bearer key, checks the method's scopes and publishes the principal."""

    def __init__(
        self,
        policies: dict[str, options_pb2.MethodPolicy],
        verify: Callable[[str], Awaitable[Principal]],
        cache: KeyCache,
        resolve_share: Callable[[str, str], Awaitable[SharePrincipal]] | None = None,
    ):
        self._policies = policies
        self._verify = verify
        self._resolve_share = resolve_share
        self._cache = cache
        self._pending: dict[str, asyncio.Future[Principal]] = {}

    async def unary(
        self,
        method: str,
        request: Any,
        context: grpc.aio.ServicerContext[Any, Any],
        call: Callable[[], Awaitable[Any]],
    ) -> Any:
        if not method.startswith(OPEN_PREFIXES):
            await self._authorise(method, context)
        return await call()

    async def stream(
        self,
        method: str,
        request: Any,
        context: grpc.aio.ServicerContext[Any, Any],
        call: Callable[[], AsyncIterator[Any]],
    ) -> AsyncIterator[Any]:
        if not method.startswith(OPEN_PREFIXES):
            await self._authorise(method, context)
        async for message in call():
            yield message

    async def _authorise(self, method: str, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        policy = self._policies.get(method)
        if policy is None:
            # Fail closed: a method we serve but never declared a policy for is refused.
            raise PermissionDenied(
                f"method {method} does not support API key access", reason="METHOD_NOT_ALLOWED"
            )
        if policy.public:
            return
        metadata = tuple(context.invocation_metadata() or ())
        sharing = _sharing_credential(metadata)
        if sharing is not None and not any(key == "authorization" for key, _ in metadata):
            if not policy.sharing_access or self._resolve_share is None:
                # A public link's credential reads its one insight; every other method needs a key.
                raise PermissionDenied(
                    f"a sharing credential cannot call {method}: it only reads the shared insight "
                    "(GetSharedInsight)",
                    reason="SHARING_ACCESS_NOT_ALLOWED",
                )
            if not _printable_ascii(sharing[1]):
                raise Unauthenticated(
                    f"{sharing[0]} must be printable ASCII", reason="MALFORMED_SHARING_CREDENTIAL"
                )
            current_share.set(await self._resolve_share(*sharing))
            return
        if not policy.required_scopes:
            raise Unauthenticated(
                f"{method} needs a sharing credential: send 'x-sharing-access-token' (the link's token) "
                "or 'x-share-token' (from UnlockSharedInsight) metadata",
                reason="MISSING_SHARING_CREDENTIAL",
            )
        raw_key = _bearer(metadata)
        principal = self._cache.get(raw_key)
        if principal is None:
            # One database check per key at a time: when a hot key's cache entry expires, the
            # calls arriving together share the check instead of stampeding the database.
            pending = self._pending.get(raw_key)
            if pending is None:
                pending = asyncio.ensure_future(self._verify(raw_key))
                self._pending[raw_key] = pending
                # Only this callback removes the entry, and no other check of the key starts before.
                pending.add_done_callback(lambda _: self._pending.pop(raw_key))
            principal = await asyncio.shield(pending)
            self._cache.put(raw_key, principal)
        missing = missing_scope(principal.scopes, list(policy.required_scopes))
        if missing is not None:
            raise PermissionDenied(
                f"API key missing required scope '{missing}'",
                reason="MISSING_SCOPE",
                metadata={"scope": missing},
            )
        current_principal.set(principal)


def _bearer(metadata: Iterable[Any]) -> str:
    for key, value in metadata:
        if key == "authorization":
            scheme, _, token = str(value).partition(" ")
            if scheme.lower() == "bearer" and token.strip() and _printable_ascii(token):
                return token.strip()
            raise Unauthenticated(
                "authorization must be 'Bearer <personal API key>'", reason="MALFORMED_AUTHORIZATION"
            )
    raise Unauthenticated(
        "missing authorization metadata: send 'authorization: Bearer <personal API key>'",
        reason="MISSING_API_KEY",
    )


def _sharing_credential(metadata: Iterable[Any]) -> tuple[str, str] | None:
    """(header, token) of the sharing credential in the metadata, or None.

    A share session token (from UnlockSharedInsight) wins over the link's raw token when both are sent.
    """
    found = {
        key: str(value).strip() for key, value in metadata if key in (SHARE_TOKEN_HEADER, ACCESS_TOKEN_HEADER)
    }
    for header in (SHARE_TOKEN_HEADER, ACCESS_TOKEN_HEADER):
        if header in found:
            return header, found[header]
    return None


def _printable_ascii(value: str) -> bool:
    # gRPC allows only printable ASCII in text metadata; grpc hands other bytes over decoded as
    # Latin-1, which no key or token can contain: refused before any lookup.
    return value.isascii() and value.isprintable()
