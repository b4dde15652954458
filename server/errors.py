"""The domain's error taxonomy; interceptors/errors.py maps it to gRPC status codes."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class FieldViolation:
    """One invalid request field: its path in the request and what is wrong with it."""

    field: str
    description: str


class DomainError(Exception):
    """Base of every error the domain raises on purpose. `reason` is a stable UPPER_SNAKE code."""

    reason = "ERROR"

    def __init__(self, message: str, *, reason: str | None = None, metadata: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        if reason:
            self.reason = reason
        self.metadata = dict(metadata or {})


class InvalidArgument(DomainError):
    """The request is malformed; retrying it unchanged cannot succeed."""

    reason = "INVALID_ARGUMENT"

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        violations: list[FieldViolation] | None = None,
        reason: str | None = None,
    ):
        found = list(violations or [])
        if field is not None:
            found.insert(0, FieldViolation(field, message))
        if found and found[0].field not in message:
            # The message alone must tell a grpcurl user which field is wrong.
            message = f"{found[0].field}: {message}"
        super().__init__(message, reason=reason, metadata={"field": found[0].field} if found else None)
        self.violations = found


class NotFound(DomainError):
    """The resource does not exist for this caller (or is soft-deleted)."""

    reason = "NOT_FOUND"


class PermissionDenied(DomainError):
    """The caller is identified but not allowed to do this."""

    reason = "PERMISSION_DENIED"


class Unauthenticated(DomainError):
    """The caller could not be identified."""

    reason = "UNAUTHENTICATED"


class FailedPrecondition(DomainError):
    """The system is not in a state that allows this; fix the state before retrying."""

    reason = "FAILED_PRECONDITION"


class AlreadyExists(DomainError):
    """The resource to create already exists."""

    reason = "ALREADY_EXISTS"


class Cancelled(DomainError):
    """The operation was cancelled (for example its query was killed by CancelQuery)."""

    reason = "CANCELLED"


class Unimplemented(DomainError):
    """The service cannot do this yet (a query kind no runner computes); the request itself is valid."""

    reason = "UNIMPLEMENTED"


class Unavailable(DomainError):
    """A dependency is temporarily unreachable; retrying later may succeed."""

    reason = "UNAVAILABLE"


class ResourceExhausted(DomainError):
    """A limit or quota was reached; `retry_after` (seconds) says when retrying may succeed."""

    reason = "RESOURCE_EXHAUSTED"

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        metadata: dict[str, str] | None = None,
        retry_after: float | None = None,
        retryable: bool = True,
    ):
        super().__init__(message, reason=reason, metadata=metadata)
        self.retry_after = retry_after
        # False for a limit the same request always hits (an answer too large): no RetryInfo then.
        self.retryable = retryable


@dataclass
class Violations:
    """Collects field violations so a request reports all of them at once."""

    items: list[FieldViolation] = field(default_factory=list)

    def add(self, path: str, description: str) -> None:
        self.items.append(FieldViolation(path, description))

    def raise_if_any(self) -> None:
        if self.items:
            first = self.items[0]
            raise InvalidArgument(first.description, violations=self.items)
