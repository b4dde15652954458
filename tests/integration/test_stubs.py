"""buf.gen.yaml's stubs for other languages: generated offline, compiled, and a Go client served.

Runs where the plugins of `make stubs` (tools/stubs/install.sh) are installed; skipped, naming what
is missing, elsewhere. The stubs are generated into a temporary GOPATH, never into the work tree.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.integration.itkit import Api, Server, Tenant, unique

ROOT = Path(__file__).resolve().parents[2]
BUF = Path(sys.executable).parent / "buf"
STUB_TOOLS = ROOT / "tools" / "stubs"
PROTOC_GEN_ES = STUB_TOOLS / "node_modules" / ".bin" / "protoc-gen-es"
TSC = STUB_TOOLS / "node_modules" / ".bin" / "tsc"
GOCODE = Path("/usr/share/gocode")
# The Go import path of the stubs (go_package) and of the example client, under the GOPATH.
MODULE = "example.com/insights"
STUBS_PACKAGE = f"{MODULE}/gen/go/insights/v1"
CLIENT_PACKAGE = f"{MODULE}/examples/go/client"


def _missing() -> list[str]:
    """What `make stubs` needs and this machine lacks."""
    missing = [
        tool
        for tool in ("go", "protoc", "protoc-gen-go", "protoc-gen-go-grpc", "grpc_java_plugin")
        if shutil.which(tool) is None
    ]
    missing += [str(p.relative_to(ROOT)) for p in (PROTOC_GEN_ES, TSC) if not p.exists()]
    for package in ("google.golang.org/grpc", "google.golang.org/protobuf", "google.golang.org/genproto"):
        if not (GOCODE / "src" / package).is_dir():
            missing.append(f"{GOCODE}/src/{package}")
    # golang/protobuf 1.3 (table-driven) panics on protoc-gen-go's messages; 1.4+ has registry.go.
    if not (GOCODE / "src" / "github.com" / "golang" / "protobuf" / "proto" / "registry.go").exists():
        missing.append("golang-github-golang-protobuf-1-5-dev")
    return missing


MISSING = _missing()
pytestmark = pytest.mark.skipif(
    bool(MISSING), reason=f"stub plugins missing ({', '.join(MISSING)}); `make stubs` installs them"
)


def _go_env(gopath: Path) -> dict[str, str]:
    """GOPATH mode over Debian's Go sources: no module download, no network."""
    env = {**os.environ, "GO111MODULE": "off", "GOPATH": f"{gopath}:{GOCODE}", "GOPROXY": "off", "GOFLAGS": ""}
    if not (env.get("GOCACHE") or env.get("XDG_CACHE_HOME") or env.get("HOME")):
        env["GOCACHE"] = str(gopath / "cache")  # go refuses to build without a cache directory
    return env


def _run(*cmd: str | Path, cwd: Path = ROOT, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, check=False, timeout=300
    )
    assert result.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{result.stdout}{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def gopath(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A GOPATH whose example.com/insights holds `buf generate`'s output and the example client."""
    root = tmp_path_factory.mktemp("gopath")
    project = root / "src" / MODULE
    _run(BUF, "generate", "-o", project)  # buf.gen.yaml as `make stubs` runs it, output moved here
    client = project / "examples" / "go" / "client"
    client.mkdir(parents=True)
    shutil.copy(ROOT / "examples" / "go" / "client" / "main.go", client)
    return root


def test_buf_generate_writes_go_typescript_and_java(gopath: Path) -> None:
    gen = gopath / "src" / MODULE / "gen"
    go = gen / "go" / "insights" / "v1"
    assert "package insightsv1" in (go / "insight.pb.go").read_text()
    assert "func NewInsightsServiceClient(" in (go / "insight_grpc.pb.go").read_text()
    assert "export const InsightsService" in (gen / "ts" / "insights" / "v1" / "insight_pb.ts").read_text()
    java = gen / "java" / "com" / "example" / "insights" / "v1"
    assert "public final class Insight " in (java / "Insight.java").read_text()
    assert "public final class InsightProto" in (java / "InsightProto.java").read_text()
    assert "class InsightsServiceGrpc" in (java / "InsightsServiceGrpc.java").read_text()
    # Every proto of ours gives a file in each language, and the vendored google/rpc none.
    stems = {p.stem for p in (ROOT / "protos" / "insights" / "v1").glob("*.proto")}
    assert {p.name.removesuffix(".pb.go") for p in go.glob("*.pb.go") if "_grpc" not in p.name} == stems
    assert {p.name.removesuffix("_pb.ts") for p in (gen / "ts" / "insights" / "v1").glob("*_pb.ts")} == stems
    assert not [p for p in gen.rglob("*") if {"google", "rpc"} & set(p.relative_to(gen).parts)]


def test_go_stubs_compile(gopath: Path) -> None:
    _run("go", "build", STUBS_PACKAGE, cwd=gopath, env=_go_env(gopath))


def test_typescript_stubs_type_check(gopath: Path) -> None:
    # tools/stubs/tsconfig.json maps @bufbuild/protobuf to the runtime pinned beside it.
    config = gopath / "tsconfig.json"
    ts = gopath / "src" / MODULE / "gen" / "ts"
    config.write_text(json.dumps({"extends": str(STUB_TOOLS / "tsconfig.json"), "include": [f"{ts}/**/*.ts"]}))
    _run(TSC, "-p", config)


@pytest.fixture(scope="module")
def go_client(gopath: Path) -> Path:
    binary = gopath / "bin" / "insights-client"
    _run("go", "build", "-o", binary, CLIENT_PACKAGE, cwd=gopath, env=_go_env(gopath))
    return binary


async def _client(binary: Path, *args: str, key: str) -> list[dict[str, Any]]:
    # Run without blocking the event loop: the server under test lives on the same loop.
    process = await asyncio.create_subprocess_exec(
        binary,
        *args,
        env={**os.environ, "INSIGHTS_API_KEY": key},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    return [json.loads(line) for line in out.decode().splitlines()]


async def test_go_client_creates_reads_and_decodes_a_refusal(
    server: Server, tenant: Tenant, api: Api, go_client: Path
) -> None:
    name = unique("From Go")
    created, got, refused = await _client(
        go_client,
        f"-target={server.target}",
        f"-environment={tenant.environment_id}",
        f"-name={name}",
        key=tenant.key("insight:write"),
    )

    assert created["step"] == "created" and created["name"] == name
    stored = await api.get(int(created["id"]))  # what the Go caller made is what Python reads
    assert stored.name == name and stored.short_id == created["short_id"]
    assert got == {"step": "got", "id": created["id"], "short_id": stored.short_id, "name": name}
    # The rich error decoded in Go with Google's errdetails, as the vendored google/rpc describes it.
    assert refused["step"] == "refused" and refused["code"] == "InvalidArgument"
    assert "insight.name" in refused["fields"], refused
    assert refused["domain"] == "insights.v1" and refused["reason"], refused
