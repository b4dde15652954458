"""Operator commands of `python -m server`: organizations and environments are created and listed,
API keys are created for a chosen owner, listed without their secret, and revoked so that a running
server refuses them; bad ids exit with a clear message and code 3, bad values with code 2."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from generated.insights.v1 import insight_pb2 as ipb
from generated.insights.v1 import insight_pb2_grpc as igrpc
from server.__main__ import main
from server.domain.accounts import hash_key
from tests.integration.itkit import Server, Tenant, bearer, expect_error, unique

REPO = Path(__file__).resolve().parents[2]
MISSING = 987_654_321


@pytest.fixture
def cli(database_url: str, capsys: pytest.CaptureFixture[str]) -> Callable[..., Any]:
    """Runs `python -m server ARGS` in this process against the suite's database: (code, out, err)."""

    async def run(*args: str) -> tuple[int, str, str]:
        argv = [*args, "--database-url", database_url, "--log-level", "WARNING"]
        code = await asyncio.to_thread(main, argv)
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


async def cli_json(cli: Callable[..., Any], *args: str) -> Any:
    code, out, err = await cli(*args, "--json")
    assert code == 0, (out, err)
    return json.loads(out)


async def test_organizations_and_environments_are_created_and_listed(cli: Callable[..., Any]) -> None:
    name = unique("Acme")
    org = await cli_json(cli, "organizations", "create", name)
    assert org["name"] == name and org["environments"] == 0
    env = await cli_json(
        cli, "environments", "create", "Production", "--organization", str(org["id"]),
        "--timezone", "Europe/Paris", "--week-start", "monday",
    )  # fmt: skip
    assert env["organization_id"] == org["id"]
    assert (env["name"], env["timezone"], env["week_start_day"]) == ("Production", "Europe/Paris", 1)

    listed = await cli_json(cli, "environments", "list", "--organization", str(org["id"]))
    assert [e["id"] for e in listed] == [env["id"]]
    organizations = {o["id"]: o for o in await cli_json(cli, "organizations", "list")}
    assert organizations[org["id"]]["environments"] == 1
    code, out, _ = await cli("environments", "list", "--organization", str(org["id"]))
    assert code == 0
    assert "Production" in out and "Europe/Paris" in out and "monday" in out and name in out


async def test_bad_ids_exit_3_and_bad_values_exit_2_with_a_message(
    cli: Callable[..., Any], tenant: Tenant
) -> None:
    other = await cli_json(cli, "organizations", "create", unique("Other"))
    cases: list[tuple[list[str], int, str]] = [
        (["environments", "create", "x", "--organization", str(MISSING)], 3, f"organization {MISSING} does not exist"),
        (["environments", "list", "--organization", str(MISSING)], 3, f"organization {MISSING} does not exist"),
        (["api-keys", "revoke", str(MISSING)], 3, f"API key {MISSING} does not exist"),
        (["api-keys", "list", "--user", str(MISSING)], 3, f"user {MISSING} does not exist"),
        (["create-api-key", "--scopes", "*", "--environment", str(MISSING)], 3, f"environment {MISSING} does not exist"),
        (["create-api-key", "--scopes", "*", "--user", str(MISSING)], 3, f"user {MISSING} does not exist"),
        (
            ["environments", "create", "x", "--organization", str(tenant.organization_id), "--timezone", "Mars/Base"],
            2,
            "unknown time zone 'Mars/Base'",
        ),
        (["organizations", "create", "  "], 2, "name must be 1-400 characters"),
        (
            ["create-api-key", "--scopes", "*", "--user", str(tenant.user_id), "--organization", str(other["id"])],
            2,
            f"user {tenant.user_id} is not a member of organization {other['id']}",
        ),
        (
            ["create-api-key", "--scopes", "*", "--organization", str(other["id"])],
            2,
            f"organization {other['id']} has no single member to own the key: give --user or --email",
        ),
        (
            ["create-api-key", "--scopes", "insight:fly", "--user", str(tenant.user_id)],
            2,
            "invalid scopes ['insight:fly']",
        ),
    ]
    for args, want_code, message in cases:
        code, out, err = await cli(*args)
        assert (code, out) == (want_code, ""), (args, code, out, err)
        assert message in err, (args, err)
    # Nothing was created by the refused commands.
    assert await cli_json(cli, "environments", "list", "--organization", str(other["id"])) == []
    assert await cli_json(cli, "api-keys", "list", "--organization", str(other["id"])) == []


async def test_a_key_made_for_a_new_user_works_until_revoked_and_its_row_stays(
    cli: Callable[..., Any], server: Server, tenant: Tenant
) -> None:
    email = f"{unique('ops')}@example.com"
    created = await cli_json(
        cli, "create-api-key", "--scopes", "insight:read", "--label", "leaked",
        "--organization", str(tenant.organization_id), "--email", email,
        "--environment", str(tenant.environment_id),
    )  # fmt: skip
    raw = created["key"]
    assert created["user_email"] == email and created["environments"] == [tenant.environment_id]
    stub = igrpc.InsightsServiceStub(server.channel)
    request = ipb.ListInsightsRequest(environment_id=tenant.environment_id)
    await stub.ListInsights(request, metadata=bearer(raw))  # the new user is a member: allowed

    listed = await cli_json(cli, "api-keys", "list", "--organization", str(tenant.organization_id))
    mine = next(k for k in listed if k["id"] == created["id"])
    assert mine["last_used_at"] is not None and mine["revoked"] is False

    code, out, err = await cli("api-keys", "revoke", str(created["id"]))
    assert code == 0, (out, err)
    assert f"API key {created['id']} ({mine['mask']}, {email}) revoked at" in out
    # The test server's auth cache is off (INSIGHTS_AUTH_CACHE_SECONDS=0): refused at once.
    await expect_error(stub.ListInsights(request, metadata=bearer(raw)), grpc.StatusCode.UNAUTHENTICATED)

    again = await cli_json(cli, "api-keys", "revoke", str(created["id"]))
    assert again["already_revoked"] is True and again["revoked_at"] is not None
    after = await cli_json(cli, "api-keys", "list", "--organization", str(tenant.organization_id))
    assert next(k for k in after if k["id"] == created["id"])["revoked"] is True
    active = await cli_json(cli, "api-keys", "list", "--organization", str(tenant.organization_id), "--active")
    assert created["id"] not in [k["id"] for k in active]


async def test_key_lists_never_show_a_secret_or_its_hash(cli: Callable[..., Any], tenant: Tenant) -> None:
    raw = tenant.key("insight:write", environments=[tenant.environment_id])
    for extra in ([], ["--json"]):
        code, out, err = await cli("api-keys", "list", "--user", str(tenant.user_id), *extra)
        assert code == 0, err
        assert raw not in out and hash_key(raw) not in out
        assert raw[:8] in out and raw[-4:] in out  # the mask, to recognise a leaked key
    [listed] = await cli_json(cli, "api-keys", "list", "--user", str(tenant.user_id))
    assert listed["id"] == tenant.key_id(raw)
    assert listed["scopes"] == ["insight:write"] and listed["environments"] == [tenant.environment_id]
    assert listed["user_id"] == tenant.user_id and listed["user_email"] == tenant.email
    assert set(listed) == {
        "id", "label", "mask", "user_id", "user_email", "scopes", "environments",
        "created_at", "last_used_at", "revoked_at", "revoked",
    }  # fmt: skip


async def test_create_api_key_for_an_existing_member_by_id(
    cli: Callable[..., Any], server: Server, tenant: Tenant
) -> None:
    second = tenant.add_environment()
    code, out, err = await cli(
        "create-api-key", "--scopes", "insight:read", "--user", str(tenant.user_id), "--environment", str(second)
    )
    assert code == 0, err
    raw = next(line.split(": ", 1)[1] for line in out.splitlines() if line.startswith("API key (shown once"))
    assert f"Environment: {second}" in out and f"User: {tenant.user_id} ({tenant.email})" in out
    stub = igrpc.InsightsServiceStub(server.channel)
    await stub.ListInsights(ipb.ListInsightsRequest(environment_id=second), metadata=bearer(raw))
    # Limited to the environment it was made for.
    await expect_error(
        stub.ListInsights(ipb.ListInsightsRequest(environment_id=tenant.environment_id), metadata=bearer(raw)),
        grpc.StatusCode.PERMISSION_DENIED,
    )


async def test_the_commands_as_a_process_exit_with_their_codes(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INSIGHTS_")}
    env |= {"INSIGHTS_DATABASE_URL": f"sqlite:///{tmp_path / 'ops.db'}", "INSIGHTS_LOG_LEVEL": "WARNING"}

    async def run(*args: str) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "server", *args, cwd=REPO, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
        return proc.returncode or 0, out.decode(), err.decode()

    code, out, err = await run("organizations", "create", "Acme", "--json")
    assert code == 0, err
    assert json.loads(out)["name"] == "Acme"
    code, out, err = await run("api-keys", "revoke", "42")
    assert (code, out) == (3, "") and "error: API key 42 does not exist" in err
