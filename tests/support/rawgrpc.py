"""Raw HTTP/2 gRPC unary calls: requests grpc's own client refuses to send (invalid header bytes),
and answers as they crossed the wire (headers apart from trailers, each message's compressed flag
and bytes), which grpc's own client hides."""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events


def unary_call(
    port: int, method: str, request: bytes, headers: list[tuple[bytes, bytes]], timeout: float = 10.0
) -> dict[bytes, bytes]:
    """Sends one unary gRPC request with `headers` sent as given; returns the response headers and
    trailers together. Blocking (run it in a thread); `timeout` bounds each socket read."""
    answer = unary_exchange(port, method, request, headers, timeout)
    return {**answer.headers, **answer.trailers}


@dataclass
class Exchange:
    """What came back: headers and trailers by name, and each message's (compressed flag, bytes)."""

    headers: dict[bytes, bytes] = field(default_factory=dict)
    trailers: dict[bytes, bytes] = field(default_factory=dict)
    messages: list[tuple[int, bytes]] = field(default_factory=list)


def unary_exchange(
    port: int, method: str, request: bytes, headers: list[tuple[bytes, bytes]], timeout: float = 30.0
) -> Exchange:
    """Sends one uncompressed unary request with `headers` added, as given (not validated or
    normalised: a test may send what a well-behaved client would not); blocking (run it in a
    thread), `timeout` bounds each socket read."""
    config = h2.config.H2Configuration(
        client_side=True,
        validate_outbound_headers=False,
        normalize_outbound_headers=False,
        validate_inbound_headers=False,
    )
    connection = h2.connection.H2Connection(config)
    answer = Exchange()
    body = b""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        connection.initiate_connection()
        stream = connection.get_next_available_stream_id()
        connection.send_headers(
            stream,
            [
                (b":method", b"POST"),
                (b":scheme", b"http"),
                (b":path", method.encode()),
                (b":authority", f"127.0.0.1:{port}".encode()),
                (b"content-type", b"application/grpc"),
                (b"te", b"trailers"),
                *headers,
            ],
        )
        connection.send_data(stream, b"\x00" + struct.pack(">I", len(request)) + request, end_stream=True)
        sock.sendall(connection.data_to_send())
        ended = False
        while not ended:
            data = sock.recv(65536)
            if not data:
                break
            for event in connection.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    answer.headers.update((bytes(k), bytes(v)) for k, v in event.headers)
                elif isinstance(event, h2.events.TrailersReceived):
                    answer.trailers.update((bytes(k), bytes(v)) for k, v in event.headers)
                elif isinstance(event, h2.events.DataReceived):
                    body += event.data
                    connection.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, h2.events.StreamEnded | h2.events.StreamReset):
                    ended = True
            sock.sendall(connection.data_to_send())
    while body:
        flag, length = body[0], struct.unpack(">I", body[1:5])[0]
        answer.messages.append((flag, body[5 : 5 + length]))
        body = body[5 + length :]
    return answer
