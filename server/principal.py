"""Who is calling: the authenticated principal and the scope rules it is checked against."""

from __future__ import annotations

from dataclasses import dataclass

from server.errors import PermissionDenied


@dataclass(frozen=True)
class EnvironmentInfo:
    """What the domain needs to know about an environment on every call."""

    id: int
    organization_id: int
    timezone: str
    week_start_day: int
    # The environment's test-account filters as canonical JSON text (reference JSON property filters);
    # carried here so that hot paths never read them from the database.
    test_account_filters: str = "[]"


@dataclass(frozen=True)
class Principal:
    """An API key's user, with the scopes and environments the key grants."""

    key_id: int
    user_id: int
    scopes: frozenset[str]
    # Environments the key may reach: the user's organizations' environments, narrowed to the
    # key's scoped environments when it has any.
    environments: dict[int, EnvironmentInfo]

    def environment(self, environment_id: int) -> EnvironmentInfo:
        """The environment, or PERMISSION_DENIED when the key cannot reach it (or it does not exist)."""
        found = self.environments.get(environment_id)
        if found is None:
            raise PermissionDenied(
                f"API key does not have access to the requested environment: ID {environment_id}.",
                reason="ENVIRONMENT_ACCESS_DENIED",
                metadata={"environment_id": str(environment_id)},
            )
        return found


@dataclass(frozen=True)
class SharePrincipal:
    """An anonymous viewer holding a sharing credential: it reaches one insight, read-only."""

    environment: EnvironmentInfo
    insight_id: int
    configuration_id: int
    # The configuration's whitelisted display settings (hideExtraDetails, ...).
    settings: dict[str, bool]


def has_scope(granted: frozenset[str], required: str) -> bool:
    """Whether granted scopes satisfy one required scope: '*' grants all, 'X:write' implies 'X:read'."""
    if "*" in granted or required in granted:
        return True
    obj, _, action = required.partition(":")
    return action == "read" and f"{obj}:write" in granted


def missing_scope(granted: frozenset[str], required: list[str]) -> str | None:
    """The first required scope that the granted ones do not satisfy, or None."""
    for scope in required:
        if not has_scope(granted, scope):
            return scope
    return None
