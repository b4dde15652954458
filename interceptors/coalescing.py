"""Runs identical concurrent calls to coalescable methods once and hands every caller the response."""

from __future__ import annotations

import asyncio
import copy
import hashlib
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import Message

from generated.insights.v1 import options_pb2
from interceptors.wrap import CallInterceptor
from server.errors import Unavailable
from server.services.context import current_principal

# Request fields that name a call rather than describe the work, so they never split a key.
VOLATILE_FIELDS = ("client_query_id",)


@dataclass
class CoalescingStats:
    """Counters for tests and benchmarks.

    `leaders` started a shared run, `followers` joined one, `bypasses` ran on their own because a
    bound was reached, `cancelled` shared runs were cancelled because every caller had left, and
    `wait_seconds` is the time callers spent waiting on shared runs (by the interceptor's clock).
    """

    leaders: int = 0
    followers: int = 0
    bypasses: int = 0
    cancelled: int = 0
    wait_seconds: float = 0.0


@dataclass
class _Flight:
    """One shared run and the number of callers currently waiting on it."""

    task: asyncio.Task[Any]
    waiters: int = 0


class CoalescingInterceptor(CallInterceptor):
    """Singleflight for unary methods whose policy says `coalescable`; must run after auth.

    Each caller passes its own environment check, then joins the run in flight for its key or
    starts one. The run is a task of its own, so a caller that cancels or runs out of time leaves
    alone; the run is cancelled only when no caller is left. The key is dropped as soon as the run
    ends: results and errors reach the callers who were waiting and are never kept.

    Coalesced handlers must report errors by raising (the error interceptor maps them per caller),
    not with `context.abort()`, and must not bound their work by `context.time_remaining()`: the
    context they see is the first caller's.
    """

    def __init__(
        self,
        policies: dict[str, options_pb2.MethodPolicy],
        *,
        max_keys: int = 1000,
        max_waiters: int = 1000,
        clock: Callable[[], float] = time.monotonic,
        volatile_fields: Iterable[str] = VOLATILE_FIELDS,
        cheap: Callable[[str, Any], bool] = lambda method, request: False,
    ):
        self._policies = {m: p for m, p in policies.items() if p.coalescable}
        # Calls that only read what is already computed (a cache read) cost less than joining.
        self._cheap = cheap
        self._max_keys = max_keys
        self._max_waiters = max_waiters
        self._clock = clock
        self._volatile = tuple(volatile_fields)
        self._flights: dict[bytes, _Flight] = {}
        # Cancelled runs still unwinding; held so the event loop's weak references cannot lose them.
        self._unwinding: set[asyncio.Task[Any]] = set()
        self.stats = CoalescingStats()

    @property
    def in_flight(self) -> int:
        """Keys with a shared run in progress."""
        return len(self._flights)

    @property
    def waiting(self) -> int:
        """Callers currently waiting on shared runs."""
        return sum(flight.waiters for flight in self._flights.values())

    async def unary(
        self,
        method: str,
        request: Any,
        context: grpc.aio.ServicerContext[Any, Any],
        call: Callable[[], Awaitable[Any]],
    ) -> Any:
        policy = self._policies.get(method)
        principal = current_principal.get()
        if policy is None or principal is None or self._cheap(method, request):
            # Not coalescable, nobody authenticated to check (the servicer decides alone), or a
            # call that never computes.
            return await call()
        environment = ""
        if _has_field(request, "environment_id"):
            # Before joining: a follower must never receive what it could not have fetched itself.
            principal.environment(request.environment_id)
            environment = str(request.environment_id)
        user = str(principal.user_id) if policy.response_per_user else ""
        key = self._key(method, environment, request, user)
        if key is None:
            return await call()
        flight = self._flights.get(key)
        if flight is not None and flight.task.done():
            # Finished but its done callback has not run yet: results are never reused.
            flight = None
        if flight is None:
            if len(self._flights) >= self._max_keys:
                self.stats.bypasses += 1
                return await call()
            # Created in the leader's context, so the servicer sees the leader's principal:
            # everything the response depends on is in the key.
            flight = _Flight(asyncio.create_task(_run(call)))
            self._flights[key] = flight
            flight.task.add_done_callback(lambda task: self._landed(key, task))
            self.stats.leaders += 1
        elif flight.waiters >= self._max_waiters:
            self.stats.bypasses += 1
            return await call()
        else:
            self.stats.followers += 1
        return await self._wait(key, flight)

    async def _wait(self, key: bytes, flight: _Flight) -> Any:
        flight.waiters += 1
        start = self._clock()
        try:
            # asyncio.wait, like shield, never cancels what it waits for: this caller's
            # cancellation or deadline ends this caller only. No timeout of our own: at the deadline
            # grpc cancels this call (a CancelledError here) and answers DEADLINE_EXCEEDED itself; an
            # abort racing that cancellation would fail on an already ended call.
            await asyncio.wait((flight.task,))
        finally:
            flight.waiters -= 1
            self.stats.wait_seconds += self._clock() - start
            if flight.waiters == 0 and not flight.task.done():
                self._abandon(key, flight)
        task = flight.task
        if task.cancelled():
            # Only the run itself can have been cancelled here (never by us while callers wait).
            raise Unavailable("the shared run was cancelled; retry", reason="COALESCED_RUN_CANCELLED")
        error = task.exception()
        if error is not None:
            # A fresh exception per caller, raised in the caller's own call, chained to the run's.
            fresh = _fresh(error)
            if fresh is error:
                raise error
            raise fresh from error
        # Every caller gets the same message: responses are read-only above the servicers (gRPC only
        # serializes them), and a copy per caller of a large answer would multiply its memory by the
        # number of callers (up to max_waiters).
        return task.result()

    def _abandon(self, key: bytes, flight: _Flight) -> None:
        # Every caller left: stop the work and let the next caller start afresh rather than join
        # a run that is being cancelled.
        if self._flights.get(key) is flight:
            del self._flights[key]
        flight.task.cancel()
        self._unwinding.add(flight.task)
        self.stats.cancelled += 1

    def _landed(self, key: bytes, task: asyncio.Task[Any]) -> None:
        if self._flights.get(key) is not None and self._flights[key].task is task:
            del self._flights[key]
        self._unwinding.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: callers got it, or nobody was left to get it

    def _key(self, method: str, environment: str, request: Any, user: str) -> bytes | None:
        """SHA-256 over the method, environment, canonical request and (per-user) the user."""
        if isinstance(request, Message):
            canonical = request
            volatile = [name for name in self._volatile if _has_field(request, name)]
            if volatile:
                canonical = type(request)()
                canonical.CopyFrom(request)
                for name in volatile:
                    canonical.ClearField(name)
            body = canonical.SerializeToString(deterministic=True)
        elif isinstance(request, bytes):
            body = request
        else:
            return None  # no canonical form: never guess one
        digest = hashlib.sha256()
        for part in (method.encode(), environment.encode(), body, user.encode()):
            # Length-prefixed, so that no two different tuples hash the same bytes.
            digest.update(len(part).to_bytes(8, "big"))
            digest.update(part)
        return digest.digest()


async def _run(call: Callable[[], Awaitable[Any]]) -> Any:
    return await call()


def _has_field(request: Any, name: str) -> bool:
    return isinstance(request, Message) and name in request.DESCRIPTOR.fields_by_name


def _fresh(error: BaseException) -> BaseException:
    try:
        return copy.copy(error)
    except Exception:
        return error
