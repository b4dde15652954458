"""Throttles every authenticated call by its class of method, its key (or shared link) and environment."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from typing import Any

import grpc

from interceptors.wrap import CallInterceptor
from server.domain.throttle import Throttle
from server.services.context import current_principal, current_share

_SERVICE = "/insights.v1."
# Methods that may compute on the engine: the reference's "ClickHouse-heavy" class, unless the call
# only reads the result cache (FORCE_CACHE).
COMPUTING = frozenset(
    _SERVICE + name
    for name in (
        "InsightsService/GetInsight",
        "InsightsService/ListInsights",
        "InsightsService/ExportInsightResult",
        "QueryService/RunQuery",
        "QueryService/StreamQuery",
        "AlertsService/CheckAlertNow",
        "SharingService/GetSharedInsight",
    )
)
# The reference's AI endpoints, which have throttles of their own.
ANALYSIS = frozenset(
    _SERVICE + name
    for name in (
        "InsightsService/AnalyzeInsight",
        "InsightsService/GetInsightSuggestions",
        "InsightsService/GenerateInsightMetadata",
    )
)


class ThrottleInterceptor(CallInterceptor):
    """RESOURCE_EXHAUSTED with RetryInfo for a call over its class's rates (server/domain/throttle.py).

    Runs after auth: the caller is an API key, counted per environment it asks for (one it cannot
    reach counts as none, so made-up environment ids cannot multiply a key's buckets), or a shared
    link. Health and reflection have neither and are not throttled. `cache_only(method, request)`
    says when a computing method's call only reads the cache (then it is an ordinary call).
    """

    def __init__(self, throttle: Throttle, cache_only: Callable[[str, Any], bool]):
        self._throttle = throttle
        self._cache_only = cache_only

    async def unary(
        self,
        method: str,
        request: Any,
        context: grpc.aio.ServicerContext[Any, Any],
        call: Callable[[], Awaitable[Any]],
    ) -> Any:
        self._check(method, request)
        return await call()

    async def stream(
        self,
        method: str,
        request: Any,
        context: grpc.aio.ServicerContext[Any, Any],
        call: Callable[[], AsyncIterator[Any]],
    ) -> AsyncIterator[Any]:
        self._check(method, request)
        async for message in call():
            yield message

    def classify(self, method: str, request: Any) -> str:
        if method in ANALYSIS:
            return "ai"
        if method in COMPUTING and not self._cache_only(method, request):
            return "compute"
        return "default"

    def _check(self, method: str, request: Any) -> None:
        caller: Hashable
        principal = current_principal.get()
        if principal is not None:
            environment = getattr(request, "environment_id", 0)
            caller = ("key", principal.key_id, environment if environment in principal.environments else 0)
        else:
            share = current_share.get()
            if share is None:
                return
            caller = ("share", share.configuration_id)
        self._throttle.check(self.classify(method, request), caller)
