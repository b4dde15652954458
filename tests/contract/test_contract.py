"""Contract checks: the protos lint, format and stay compatible, stubs are fresh, every RPC has a policy."""

from __future__ import annotations

import importlib
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf.descriptor import MethodDescriptor

from generated.insights.v1 import options_pb2

ROOT = Path(__file__).resolve().parents[2]
GENERATED = ROOT / "generated" / "insights" / "v1"
# buf comes from the buf-bin wheel, so it sits next to the interpreter running the tests.
BUF = Path(sys.executable).parent / "buf"
# A required scope names an object and an access level, as the reference's key scopes do.
SCOPE = re.compile(r"^[a-z][a-z_]*:(read|write)$")


def _run(*cmd: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(c) for c in cmd], cwd=ROOT, capture_output=True, text=True, check=False)


def _buf(*args: str) -> subprocess.CompletedProcess[str]:
    if not BUF.exists():
        pytest.fail(f"buf not found at {BUF}; install the pinned tools with `make venv`")
    return _run(BUF, *args)


def _output(result: subprocess.CompletedProcess[str]) -> str:
    return f"{result.stdout}{result.stderr}".strip()


def test_buf_lint_is_clean() -> None:
    result = _buf("lint")
    assert result.returncode == 0, f"`buf lint` found problems in protos/:\n{_output(result)}"


def test_buf_format_is_clean() -> None:
    result = _buf("format", "--exit-code", "-d")
    assert result.returncode == 0, (
        f"protos/ is not buf-formatted; run `.venv/bin/buf format -w`. Diff:\n{_output(result)}"
    )


def test_generated_stubs_are_fresh() -> None:
    result = _run(sys.executable, ROOT / "tools" / "gen_protos.py", "--check")
    # Also covers generated/insights.binpb (what reflection serves) and docs/api.md (rendered from it).
    assert result.returncode == 0, (
        f"generated/ or docs/api.md does not match protos/; run `make proto`.\n{_output(result)}"
    )


def _previous_commit_with_protos() -> str | None:
    """The commit before HEAD when it exists and already held protos (else nothing to compare)."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        return None
    rev = _run("git", "rev-parse", "--verify", "--quiet", "HEAD~1^{commit}")
    if rev.returncode != 0:  # first commit, or a shallow clone of depth 1
        return None
    sha = rev.stdout.strip()
    listed = _run("git", "ls-tree", "-r", "--name-only", sha, "--", "protos")
    if listed.returncode != 0 or not any(n.endswith(".proto") for n in listed.stdout.split()):
        return None
    return sha


def test_no_breaking_change_against_previous_commit() -> None:
    sha = _previous_commit_with_protos()
    if sha is None:
        pytest.skip("no previous commit with protos/ in git history to compare against")
    # Working tree vs HEAD~1 covers both the last commit and any uncommitted change.
    result = _buf("breaking", "--against", f".git#ref={sha}")
    assert result.returncode == 0, (
        f"protos/ breaks compatibility with commit {sha[:12]} (HEAD~1). Released fields must not "
        f"change: add new fields/RPCs instead, or reserve removed ones.\n{_output(result)}"
    )


def _methods() -> list[MethodDescriptor]:
    """Every RPC of every service compiled into generated/insights/v1."""
    methods: list[MethodDescriptor] = []
    for path in sorted(GENERATED.glob("*_pb2.py")):
        module = importlib.import_module(f"generated.insights.v1.{path.stem}")
        for service in module.DESCRIPTOR.services_by_name.values():
            methods.extend(service.methods)
    return methods


METHODS = _methods()


def test_services_are_found() -> None:
    # Guards the policy test below: with no methods collected it would pass without checking anything.
    assert METHODS, f"no services found in {GENERATED}; run `make proto`"


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.full_name)
def test_every_rpc_declares_an_access_policy(method: MethodDescriptor) -> None:
    options = method.GetOptions()
    # The auth interceptor refuses a method without a policy, so a missing one is an unusable RPC.
    assert options.HasExtension(options_pb2.policy), (
        f"{method.full_name} has no `option (policy)`; add "
        f'`option (policy) = {{required_scopes: "<object>:read|write"}};` to the rpc'
    )
    policy = options.Extensions[options_pb2.policy]
    scopes = list(policy.required_scopes)
    # Every RPC needs scopes, or is public (no credential), or is reached with a sharing credential.
    assert scopes or policy.public or policy.sharing_access, (
        f"{method.full_name} declares a policy with no required_scopes, public or sharing_access"
    )
    if policy.public:
        assert not scopes and not policy.sharing_access, f"{method.full_name}: public excludes other rules"
    bad = [s for s in scopes if not SCOPE.fullmatch(s)]
    assert not bad, f"{method.full_name} has malformed scopes {bad}; expected '<object>:read|write'"


def test_the_api_reference_documents_every_rpc_with_its_scope_and_types() -> None:
    text = (ROOT / "docs" / "api.md").read_text()
    sections = {s.split("\n", 1)[0]: s for s in text.split("\n#### ")[1:]}
    headings = set(re.findall(r"^### (\S+)$", text, re.MULTILINE))
    for method in METHODS:
        section = sections.get(method.full_name)
        assert section, f"{method.full_name} is not in docs/api.md; run `make proto`"
        policy = method.GetOptions().Extensions[options_pb2.policy]
        for scope in policy.required_scopes:
            assert f"`{scope}`" in section, f"{method.full_name}: scope {scope} not in its docs/api.md section"
        request = ("stream " if method.client_streaming else "") + method.input_type.full_name
        response = ("stream " if method.server_streaming else "") + method.output_type.full_name
        assert f"`rpc {method.name}({request}) returns ({response})`" in section, method.full_name
        for message in (method.input_type, method.output_type):
            if message.full_name.startswith("insights."):
                assert message.full_name in headings, f"{message.full_name} has no section in docs/api.md"
    # The comments come along (the descriptor set is built with source info).
    assert "Returns one insight that is not deleted, by id or short id." in sections[
        "insights.v1.InsightsService.GetInsight"
    ]
