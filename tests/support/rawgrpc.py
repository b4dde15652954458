"""A raw HTTP/2 gRPC call, for requests that grpc's own client refuses to send (invalid header bytes)."""

from __future__ import annotations

import socket
import struct

import h2.config
import h2.connection
import h2.events


def unary_call(
    port: int, method: str, request: bytes, headers: list[tuple[bytes, bytes]], timeout: float = 10.0
) -> dict[bytes, bytes]:
    """Sends one unary gRPC request with `headers` sent as given; returns the response headers and trailers.

    Blocking (run it in a thread); `timeout` bounds each socket read.
    """
    config = h2.config.H2Configuration(
        client_side=True,
        # Send the bytes as given: the point is to send what a well-behaved client would not.
        validate_outbound_headers=False,
        normalize_outbound_headers=False,
        validate_inbound_headers=False,
    )
    connection = h2.connection.H2Connection(config)
    answer: dict[bytes, bytes] = {}
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
        # One uncompressed gRPC message: flag byte, 4-byte big-endian length, the bytes.
        connection.send_data(stream, b"\x00" + struct.pack(">I", len(request)) + request, end_stream=True)
        sock.sendall(connection.data_to_send())
        ended = False
        while not ended:
            data = sock.recv(65536)
            if not data:
                break
            for event in connection.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived | h2.events.TrailersReceived):
                    answer.update((bytes(k), bytes(v)) for k, v in event.headers)
                elif isinstance(event, h2.events.DataReceived):
                    connection.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, h2.events.StreamEnded | h2.events.StreamReset):
                    ended = True
            sock.sendall(connection.data_to_send())
    return answer
