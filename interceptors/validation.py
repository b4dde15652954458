"""Refuses, before any servicer runs, requests that do not decode or hold values the contract lacks."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

from interceptors.wrap import HandlerWrapper, _aiter, _await
from server import requestid
from server.errors import FieldViolation, InvalidArgument
from server.queries.common.checks import problems

# What protobuf's decoder says (its texts are stable across upb releases) → what a caller can fix.
_CAUSES = (
    ("MaxDepth", "messages are nested deeper than protobuf's limit of 100 levels"),
    ("UTF-8", "a string field holds bytes that are not valid UTF-8"),
)


class Undecodable:
    """Stands for a request whose bytes did not decode: interceptors outside this one may see it
    (it has none of the request's fields) before the call is refused with INVALID_ARGUMENT."""

    __slots__ = ("cause", "type_name")

    def __init__(self, type_name: str, cause: str):
        self.type_name = type_name
        self.cause = cause


def _decoder(deserializer: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    owner = getattr(deserializer, "__self__", None)  # Message.FromString is bound to its class
    descriptor = getattr(owner, "DESCRIPTOR", None)
    type_name = getattr(descriptor, "full_name", "the request message")

    def decode(raw: bytes) -> Any:
        try:
            return deserializer(raw)
        except Exception as exc:
            # grpc answers a deserializer's exception with UNKNOWN and the exception's class and
            # text; a caller's bad bytes are its own error, so they are refused in the call instead.
            text = str(exc)
            cause = next(
                (why for marker, why in _CAUSES if marker in text), "the bytes are not a valid message"
            )
            return Undecodable(type_name, cause)

    return decode


def check(request: Any) -> None:
    """Raises InvalidArgument for an undecodable request, one with fields the contract refuses, or
    an unusable x-request-id header."""
    refused = requestid.refused.get()
    if refused is not None:
        raise InvalidArgument(
            f"the {requestid.HEADER} header must be one value of 1-{requestid.MAX_CHARS} letters, digits "
            f"or . _ : / + = @ - (got {refused!r})",
            field=requestid.HEADER,
            reason="INVALID_REQUEST_ID",
        )
    if isinstance(request, Undecodable):
        raise InvalidArgument(
            f"the request could not be decoded as {request.type_name}: {request.cause}",
            reason="UNDECODABLE_REQUEST",
        )
    found = list(problems(request)) if hasattr(request, "DESCRIPTOR") else []
    if found:
        path, description = found[0]
        raise InvalidArgument(
            f"{path}: {description}",
            violations=[FieldViolation(p, d) for p, d in found],
            reason="INVALID_FIELD_VALUE",
        )


async def _checked(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    async for request in requests:
        check(request)
        yield request


class RequestChecks(HandlerWrapper):
    """Decodes each request without letting a decode error escape, then checks it (see `check`).

    Placed after auth (an unauthenticated caller learns nothing about its request) and before
    coalescing (which keys on the request). Request streams are checked message by message, as
    the servicer reads them.
    """

    def _wrap(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        return _checking(handler)


def _checking(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """`handler` with every request it reads checked first (see `check`)."""
    deserializer = handler.request_deserializer
    decode = _decoder(deserializer) if deserializer is not None else None
    behaviour: Any
    if not handler.request_streaming and not handler.response_streaming:
        inner_uu = handler.unary_unary
        if inspect.iscoroutinefunction(inner_uu):
            # The hot path (every GetInsight): one coroutine, no adapter around the inner one.
            async def unary_unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
                check(request)
                return await inner_uu(request, context)

        else:

            async def unary_unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
                check(request)
                return await _await(inner_uu(request, context))

        behaviour, factory = unary_unary, grpc.unary_unary_rpc_method_handler
    elif not handler.request_streaming:
        inner_us = handler.unary_stream

        # An async generator function: grpc.aio tells streaming behaviours apart by that.
        async def unary_stream(
            request: Any, context: grpc.aio.ServicerContext[Any, Any]
        ) -> AsyncIterator[Any]:
            check(request)
            async for message in _aiter(inner_us(request, context)):
                yield message

        behaviour, factory = unary_stream, grpc.unary_stream_rpc_method_handler
    elif not handler.response_streaming:
        inner_su = handler.stream_unary

        async def stream_unary(
            requests: AsyncIterator[Any], context: grpc.aio.ServicerContext[Any, Any]
        ) -> Any:
            return await _await(inner_su(_checked(requests), context))

        behaviour, factory = stream_unary, grpc.stream_unary_rpc_method_handler
    else:
        inner_ss = handler.stream_stream

        async def stream_stream(
            requests: AsyncIterator[Any], context: grpc.aio.ServicerContext[Any, Any]
        ) -> AsyncIterator[Any]:
            async for message in _aiter(inner_ss(_checked(requests), context)):
                yield message

        behaviour, factory = stream_stream, grpc.stream_stream_rpc_method_handler
    return factory(behaviour, request_deserializer=decode, response_serializer=handler.response_serializer)
