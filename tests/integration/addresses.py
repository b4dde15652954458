"""Clients with distinct addresses on one machine: a TCP relay that reaches the server from 127.0.0.N.

A gRPC client cannot choose its source address, and every loopback connection comes from
127.0.0.1. The relay accepts the client's connection and opens its own to the server bound to
another loopback address (all of 127/8 is local on Linux), so the server sees a different peer.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import grpc


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        writer.close()


@contextlib.asynccontextmanager
async def channel_from(source: str, server_port: int) -> AsyncIterator[grpc.aio.Channel]:
    """A channel to the server on 127.0.0.1:`server_port` whose connections come from `source`."""
    tasks: set[asyncio.Task[None]] = set()

    async def relay(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        server_reader, server_writer = await asyncio.open_connection(
            "127.0.0.1", server_port, local_addr=(source, 0)
        )
        for task in (
            asyncio.create_task(_pipe(client_reader, server_writer)),
            asyncio.create_task(_pipe(server_reader, client_writer)),
        ):
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    listener = await asyncio.start_server(relay, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield channel
    finally:
        await channel.close()
        listener.close()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await listener.wait_closed()
