"""A TCP proxy in front of a gRPC server that reads the HTTP/2 frames passing through: it counts call
attempts and pings, sees GOAWAYs, and can cut the connection under a call (a real UNAVAILABLE)."""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_HEADERS, _PING, _GOAWAY = 0x1, 0x6, 0x7
_ACK = 0x1


@dataclass
class GoAway:
    """A GOAWAY the server sent: its HTTP/2 error code and debug data ("too_many_pings"...)."""

    error_code: int
    debug: bytes


@dataclass
class FrameProxy:
    """Forwards 127.0.0.1:`port` to 127.0.0.1:`upstream`, frame by frame.

    The first `cut_calls` call attempts (client HEADERS frames) are not forwarded: their connection is
    cut instead, after the client sent the call, so the client sees the transport fail under it.
    """

    upstream: int
    cut_calls: int = 0
    port: int = 0
    connections: int = 0
    # Every call attempt's stream id, in arrival order (cut ones included).
    attempts: list[int] = field(default_factory=list)
    pings: int = 0
    goaways: list[GoAway] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    _server: asyncio.base_events.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _writers: list[asyncio.StreamWriter] = field(default_factory=list)

    async def __aenter__(self) -> FrameProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        # Cutting every connection ends the relays by themselves (no task is cancelled under
        # asyncio's stream callbacks, which would log it).
        for writer in self._writers:
            writer.transport.abort()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def wait_until(self, condition: Callable[[], bool], timeout: float = 60.0) -> None:
        """Waits (on the proxy's own events, no polling) until `condition()` holds."""

        async def watch() -> None:
            while not condition():
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(watch(), timeout)

    def _note(self) -> None:
        self.changed.set()

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._note()
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.append(client_w)
        try:
            server_r, server_w = await asyncio.open_connection("127.0.0.1", self.upstream)
        except OSError:
            client_w.close()
            self._tasks.discard(task)
            return
        self._writers.append(server_w)
        down = asyncio.create_task(self._downstream(server_r, client_w))
        self._tasks.add(down)
        try:
            await self._upstream(client_r, server_w, client_w)
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            server_w.transport.abort()  # ends the other direction's relay
            with contextlib.suppress(OSError):
                await down
            self._tasks.discard(down)
            for writer in (server_w, client_w):
                writer.close()
            self._tasks.discard(task)
            self._note()

    async def _upstream(
        self, client_r: asyncio.StreamReader, server_w: asyncio.StreamWriter, client_w: asyncio.StreamWriter
    ) -> None:
        server_w.write(await client_r.readexactly(len(_PREFACE)))
        while True:
            head = await client_r.readexactly(9)
            length = int.from_bytes(head[:3], "big")
            kind, flags = head[3], head[4]
            stream = struct.unpack(">I", head[5:9])[0] & 0x7FFFFFFF
            body = await client_r.readexactly(length)
            if kind == _HEADERS and stream:
                self.attempts.append(stream)
                self._note()
                if len(self.attempts) <= self.cut_calls:
                    # The call left the client: cutting now is a failure under a sent call, which
                    # gRPC does not retry transparently (only a retry policy may).
                    client_w.transport.abort()
                    return
            if kind == _PING and not flags & _ACK:
                self.pings += 1
                self._note()
            server_w.write(head + body)
            await server_w.drain()

    async def _downstream(self, server_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while True:
                head = await server_r.readexactly(9)
                body = await server_r.readexactly(int.from_bytes(head[:3], "big"))
                if head[3] == _GOAWAY:
                    self.goaways.append(GoAway(struct.unpack(">I", body[4:8])[0], body[8:]))
                    self._note()
                client_w.write(head + body)
                await client_w.drain()
        client_w.close()
