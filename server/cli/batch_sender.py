"""The client side of IngestEventBatches: sends numbered batches, keeps each until its ack, and after a
dropped stream reconnects and resends the unacknowledged ones (safe: the server stores a uuid once)."""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import grpc

from generated.insights.v1 import events_pb2, events_pb2_grpc

# Codes after which the same batches may be sent again on a new stream: the connection dropped or
# the server is going away (shutdown, restart). Anything else is the server's answer and final.
RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE})
# Batches sent ahead of their acks: the server inserts one while the next ones travel.
WINDOW = 4
# Consecutive failed streams (without an ack between them) before giving up.
MAX_RECONNECTS = 5
# How long a reconnect waits for the server to listen again, and the pauses between attempts.
READY_TIMEOUT = 60.0
BACKOFF = (0.5, 1.0, 2.0, 4.0, 8.0)


class SendFailed(RuntimeError):
    """The batches could not all be acknowledged; `acked` batches were (and are stored)."""

    def __init__(self, message: str, acked: int):
        super().__init__(message)
        self.acked = acked


@dataclass(frozen=True, slots=True)
class OutgoingBatch:
    """One batch as sent: its sequence, its message, and the caller's number for each event
    (file line numbers for the loader), so that rejections can be reported in the caller's terms."""

    sequence: int
    message: events_pb2.IngestEventBatchesRequest
    numbers: Sequence[int]


class BatchSender:
    """Sends `batches` (each a list of (number, Event)) through IngestEventBatches, calling `on_ack`
    for every acknowledged batch in order. Blocking; one use."""

    def __init__(
        self,
        channel: grpc.Channel,
        metadata: Sequence[tuple[str, str]],
        environment_id: int,
        batches: Iterable[Sequence[tuple[int, events_pb2.Event]]],
        on_ack: Callable[[OutgoingBatch, events_pb2.IngestEventBatchesResponse], None],
        *,
        window: int = WINDOW,
        max_reconnects: int = MAX_RECONNECTS,
        ready_timeout: float = READY_TIMEOUT,
        backoff: Sequence[float] = BACKOFF,
    ):
        self._channel = channel
        self._stub = events_pb2_grpc.EventsServiceStub(channel)
        self._metadata = tuple(metadata)
        self._environment_id = environment_id
        self._source: Iterator[Sequence[tuple[int, events_pb2.Event]]] = iter(batches)
        self._on_ack = on_ack
        self._window = max(1, window)
        self._max_reconnects = max_reconnects
        self._ready_timeout = ready_timeout
        self._backoff = tuple(backoff) or (0.0,)
        # Guards everything below; request generators of old streams wait on it too.
        self._cond = threading.Condition()
        self._unacked: collections.deque[OutgoingBatch] = collections.deque()
        self._next_sequence = 1
        self._attempt = 0
        self._pulling = False
        self._source_done = False
        self._source_error: BaseException | None = None
        self.acked = 0
        self.reconnects = 0

    def send(self) -> None:
        """Sends everything; returns once every batch is acknowledged. SendFailed otherwise."""
        failures = 0
        while True:
            acked_before = self.acked
            try:
                self._stream()
            except grpc.RpcError as exc:
                code = exc.code()
                if code not in RETRYABLE:
                    raise SendFailed(f"{code.name}: {exc.details()}", self.acked) from None
                failures = 1 if self.acked > acked_before else failures + 1
                if failures > self._max_reconnects:
                    raise SendFailed(
                        f"{code.name} after {self._max_reconnects} reconnects: {exc.details()}", self.acked
                    ) from None
                self._reconnect(failures)
                continue
            if self._source_error is not None:
                raise self._source_error
            return

    def _reconnect(self, failures: int) -> None:
        """Pauses, then waits until the channel is connected again (bounded)."""
        self.reconnects += 1
        time.sleep(self._backoff[min(failures, len(self._backoff)) - 1])
        ready = grpc.channel_ready_future(self._channel)
        try:
            ready.result(timeout=self._ready_timeout)
        except grpc.FutureTimeoutError:
            ready.cancel()
            raise SendFailed(
                f"the server did not come back within {self._ready_timeout:g}s", self.acked
            ) from None

    def _stream(self) -> None:
        """One stream: sends from the first unacknowledged batch on, reads acks until the server ends."""
        with self._cond:
            self._attempt += 1
            attempt = self._attempt
            first = self._unacked[0].sequence if self._unacked else self._next_sequence
        responses = self._stub.IngestEventBatches(self._requests(attempt, first), metadata=self._metadata)
        try:
            for ack in responses:
                self._acknowledge(ack)
        finally:
            responses.cancel()
            with self._cond:
                # Ends this stream's request generator if it is still waiting for room.
                self._attempt += 1
                self._cond.notify_all()
        with self._cond:
            left = len(self._unacked)
            finished = self._source_done
        if left or not finished:
            raise SendFailed(f"the server ended the stream with {left} batches unacknowledged", self.acked)

    def _acknowledge(self, ack: events_pb2.IngestEventBatchesResponse) -> None:
        with self._cond:
            if not self._unacked or self._unacked[0].sequence != ack.sequence:
                expected = self._unacked[0].sequence if self._unacked else None
                raise SendFailed(
                    f"acknowledgement for batch {ack.sequence} while waiting for {expected}", self.acked
                )
            batch = self._unacked.popleft()
            self.acked += 1
            self._cond.notify_all()
        self._on_ack(batch, ack)

    def _requests(self, attempt: int, first: int) -> Iterator[events_pb2.IngestEventBatchesRequest]:
        """The requests of one stream: unacknowledged batches from `first` on, then new ones while
        fewer than `window` await their acks. Only one generator pulls from the source at a time."""
        next_sequence = first
        while True:
            pull = False
            with self._cond:
                while True:
                    if self._attempt != attempt:
                        return
                    batch = next((b for b in self._unacked if b.sequence >= next_sequence), None)
                    if batch is not None:
                        break
                    if self._source_done:
                        return
                    if len(self._unacked) < self._window and not self._pulling:
                        self._pulling = pull = True
                        break
                    self._cond.wait()
            if pull:
                self._pull()
                continue
            assert batch is not None
            next_sequence = batch.sequence + 1
            yield batch.message

    def _pull(self) -> None:
        """Reads the next batch from the source into the unacknowledged queue (or marks the end)."""
        try:
            items = next(self._source, None)
            error = None
        except Exception as exc:  # reported by send(): a generator's exception would be swallowed
            items, error = None, exc
        with self._cond:
            self._pulling = False
            if items is None:
                self._source_done = True
                self._source_error = error
            elif items:
                message = events_pb2.IngestEventBatchesRequest(
                    environment_id=self._environment_id,
                    sequence=self._next_sequence,
                    events=[event for _, event in items],
                )
                self._unacked.append(OutgoingBatch(self._next_sequence, message, [n for n, _ in items]))
                self._next_sequence += 1
            self._cond.notify_all()
