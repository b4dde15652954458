"""Hypothesis profiles of the suite (`dev`, `ci`, `thorough`), chosen once per pytest session.

The profile comes from pytest's `--hypothesis-profile`, else the HYPOTHESIS_PROFILE environment
variable, else `ci` when CI is set, else `dev`:

- `dev`: derandomized, the same examples every run, so a local run fails only for a change.
- `ci`: randomized, every run explores new examples. `make test` uses it.
- `thorough`: randomized, twenty times the examples, for a session of its own.

A randomized session runs every property test from one seed, drawn at start unless
`--hypothesis-seed` gives it. The seed is printed in the session header and next to each failure,
so `pytest --hypothesis-profile=ci --hypothesis-seed=N <test id>` replays a failure exactly.
No profile keeps a local example database: what replays a failure is the printed seed (or the
printed `@reproduce_failure` blob), the same on every machine.
"""

from __future__ import annotations

import os
import secrets

import pytest
from hypothesis import HealthCheck, settings
from hypothesis.errors import InvalidArgument

# The max_examples of the dev and ci profiles; tests scale their own budgets by the active one.
BASE_EXAMPLES = 100
PROFILES = ("dev", "ci", "thorough")

_COMMON = {
    "deadline": None,  # no wall-clock limits: the machine may be busy (a project rule)
    "database": None,  # failures replay from the printed seed or blob, not from local state
    "print_blob": True,
    "suppress_health_check": [HealthCheck.too_slow],  # wall-clock again
}
settings.register_profile("dev", max_examples=BASE_EXAMPLES, derandomize=True, **_COMMON)
settings.register_profile("ci", max_examples=BASE_EXAMPLES, derandomize=False, **_COMMON)
settings.register_profile("thorough", max_examples=20 * BASE_EXAMPLES, derandomize=False, **_COMMON)


def examples(budget: int) -> int:
    """A test's example budget under the active profile: `budget` in dev and ci, 20× in thorough."""
    return max(1, budget * settings().max_examples // BASE_EXAMPLES)


def configure(config: pytest.Config) -> None:
    """Chooses the profile and, when it is randomized, the session's seed (before hypothesis's
    own pytest plugin reads both options)."""
    name = (
        config.getoption("hypothesis_profile")
        or os.environ.get("HYPOTHESIS_PROFILE")
        or ("ci" if os.environ.get("CI") else "dev")
    )
    try:
        profile = settings.get_profile(name)
    except InvalidArgument:
        raise pytest.UsageError(f"unknown hypothesis profile {name!r}: one of {', '.join(PROFILES)}") from None
    config.option.hypothesis_profile = name
    if not profile.derandomize and config.getoption("hypothesis_seed") is None:
        config.option.hypothesis_seed = str(secrets.randbelow(2**32))


def replay_hint(config: pytest.Config) -> str:
    """How to run a property test again with the examples of this session."""
    name = config.getoption("hypothesis_profile")
    seed = config.getoption("hypothesis_seed")
    if settings.get_profile(name).derandomize:
        return f"hypothesis profile {name!r} (derandomized: every run tries the same examples)"
    return (
        f"hypothesis profile {name!r}, seed {seed}: replay with "
        f"`pytest --hypothesis-profile={name} --hypothesis-seed={seed} <test id>`"
    )
