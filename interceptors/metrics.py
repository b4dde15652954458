"""RPCs for the metrics endpoint: calls by method and the code the client saw, seconds, in flight."""

from __future__ import annotations

from collections.abc import Iterable

from server.meter import Counts, Distribution

# The one label of a method not in the service's descriptors (the set of label values stays bounded).
OTHER = "other"


class RpcMeter:
    """Counts calls of the methods it is given (full gRPC paths, `/package.Service/Method`)."""

    def __init__(self, methods: Iterable[str]):
        self._known = frozenset(methods)
        self.calls = Counts()  # (method, code) -> calls
        self.seconds = Distribution()  # (method,) -> seconds
        self.in_flight = Counts()  # (method,) -> calls running now

    def label(self, method: str) -> str:
        """The method's label: its path when the proto declares it, else `other`."""
        return method if method in self._known else OTHER

    def begin(self, method: str) -> None:
        self.in_flight.add((self.label(method),))

    def end(self, method: str, code: str, seconds: float) -> None:
        label = self.label(method)
        self.in_flight.add((label,), -1)
        self.calls.add((label, code))
        self.seconds.observe((label,), seconds)
