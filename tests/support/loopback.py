"""A grpc.aio server on a loopback port with a channel to it, for tests of interceptors."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import grpc


@asynccontextmanager
async def loopback(
    handler: grpc.GenericRpcHandler, interceptors: Sequence[Any]
) -> AsyncIterator[grpc.aio.Channel]:
    """Serves `handler` behind `interceptors` on a free loopback port; yields a channel to it."""
    server = grpc.aio.server(interceptors=list(interceptors))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield channel
    finally:
        await channel.close()
        await server.stop(None)
