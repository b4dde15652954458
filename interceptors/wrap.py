"""Base of our interceptors: wraps each method handler, of any of the four kinds, once per call."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc


class HandlerWrapper(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Serves each method's handler wrapped by `_wrap`, built once per handler."""

    def _wrap(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        raise NotImplementedError

    @property
    def _wrapped(self) -> dict[tuple[str, int], tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]]:
        # Created lazily so subclasses need not call a base __init__.
        found: dict[tuple[str, int], tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] | None
        found = self.__dict__.get("_wrapped_handlers")
        if found is None:
            found = self.__dict__["_wrapped_handlers"] = {}
        return found

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        # A method's handler is the same object on every call (each layer memoises its wrapper), so
        # wrap it once: building handlers per call was a measurable share of a hot read.
        key = (handler_call_details.method, id(handler))
        wrapped = self._wrapped.get(key)
        if wrapped is None or wrapped[0] is not handler:
            wrapped = (handler, self._wrap(handler, handler_call_details.method))
            self._wrapped[key] = wrapped
        return wrapped[1]


class CallInterceptor(HandlerWrapper):
    """Runs `unary` around unary-response calls and `stream` around streaming-response calls.

    grpc.aio interceptors see neither the request nor the context, so the work happens in a
    wrapped handler of the same kind, built with the original (de)serializers.
    """

    async def unary(
        self,
        method: str,
        request: Any,
        context: grpc.aio.ServicerContext[Any, Any],
        call: Callable[[], Awaitable[Any]],
    ) -> Any:
        return await call()

    async def stream(
        self,
        method: str,
        request: Any,
        context: grpc.aio.ServicerContext[Any, Any],
        call: Callable[[], AsyncIterator[Any]],
    ) -> AsyncIterator[Any]:
        async for message in call():
            yield message

    def _wrap(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        kind = (handler.request_streaming, handler.response_streaming)
        inner: Any = {
            (False, False): handler.unary_unary,
            (True, False): handler.stream_unary,
            (False, True): handler.unary_stream,
            (True, True): handler.stream_stream,
        }[kind]
        factory: Any = {
            (False, False): grpc.unary_unary_rpc_method_handler,
            (True, False): grpc.stream_unary_rpc_method_handler,
            (False, True): grpc.unary_stream_rpc_method_handler,
            (True, True): grpc.stream_stream_rpc_method_handler,
        }[kind]
        behaviour: Any
        if handler.response_streaming:

            async def streaming(
                request: Any, context: grpc.aio.ServicerContext[Any, Any]
            ) -> AsyncIterator[Any]:
                # grpc.aio tells streaming behaviours apart by being async generator functions.
                async for message in self.stream(
                    method, request, context, lambda: _aiter(inner(request, context))
                ):
                    yield message

            behaviour = streaming
        else:

            async def unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
                return await self.unary(method, request, context, lambda: _await(inner(request, context)))

            behaviour = unary
        return factory(
            behaviour,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


async def _await(result: Any) -> Any:
    # Handlers may be plain functions inside an aio server; their result is then not awaitable.
    return await result if inspect.isawaitable(result) else result


async def _aiter(result: Any) -> AsyncIterator[Any]:
    if inspect.isawaitable(result):
        # A handler that writes its messages with context.write() (as the aio health Watch does).
        await result
        return
    if hasattr(result, "__aiter__"):
        async for message in result:
            yield message
    else:
        for message in result:
            yield message
