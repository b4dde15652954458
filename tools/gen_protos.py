"""Regenerates generated/ (Python stubs, the descriptor set) and docs/api.md from protos/ (or checks them)."""

from __future__ import annotations

import argparse
import filecmp
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import grpc_tools
from api_reference import render  # tools/ is on the path: this runs as a script

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
OUT = ROOT / "generated"
# The published descriptor set (imports and comments included): what reflection serves.
DESCRIPTOR_SET = "insights.binpb"
API_REFERENCE = ROOT / "docs" / "api.md"
# protoc writes absolute imports from the proto root ("from insights.v1 import
# x_pb2"); we keep generated/ a real package, so they are rewritten to it.
_IMPORT = re.compile(r"^(from|import) insights\.v1", re.MULTILINE)
# Vendored googleapis protos (protos/google/README.md): Python takes them from the
# googleapis-common-protos package, so generating a second google.rpc here would clash.
VENDORED = frozenset({"google"})


def generate(dest: Path) -> None:
    """Runs protoc for every proto file and writes the package into dest."""
    protos = sorted(
        str(p.relative_to(PROTO_ROOT))
        for p in PROTO_ROOT.rglob("*.proto")
        if p.relative_to(PROTO_ROOT).parts[0] not in VENDORED
    )
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    bindir = Path(sys.executable).parent
    with tempfile.TemporaryDirectory() as raw:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "grpc_tools.protoc",
                f"-I{PROTO_ROOT}",
                f"-I{well_known}",
                f"--plugin=protoc-gen-mypy={bindir / 'protoc-gen-mypy'}",
                f"--plugin=protoc-gen-mypy_grpc={bindir / 'protoc-gen-mypy_grpc'}",
                f"--python_out={raw}",
                f"--grpc_python_out={raw}",
                f"--mypy_out={raw}",
                f"--mypy_grpc_out={raw}",
                f"--descriptor_set_out={Path(raw) / DESCRIPTOR_SET}",
                "--include_imports",
                "--include_source_info",
                *protos,
            ],
            check=True,
            cwd=PROTO_ROOT,
        )
        for src in Path(raw).rglob("*.py*"):
            text = _IMPORT.sub(lambda m: f"{m.group(1)} generated.insights.v1", src.read_text())
            target = dest / src.relative_to(raw)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        shutil.copyfile(Path(raw) / DESCRIPTOR_SET, dest / DESCRIPTOR_SET)
    for pkg in (dest, dest / "insights", dest / "insights" / "v1"):
        init = pkg / "__init__.py"
        if not init.exists():
            init.write_text('"""Generated protobuf and gRPC stubs; rebuilt by `make proto`."""\n')


def stale_files(current: Path, fresh: Path) -> list[str]:
    """Names the files that differ between two generated trees."""

    def files(tree: Path) -> set[str]:
        return {
            str(p.relative_to(tree)) for p in tree.rglob("*") if p.is_file() and "__pycache__" not in p.parts
        }

    have, want = files(current), files(fresh)
    diff = sorted(have ^ want)
    diff += sorted(f for f in have & want if not filecmp.cmp(current / f, fresh / f, shallow=False))
    return diff


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if generated/ or docs/api.md is stale")
    args = parser.parse_args()
    if args.check:
        with tempfile.TemporaryDirectory() as tmp:
            generate(Path(tmp))
            diff = stale_files(OUT, Path(tmp))
            reference = render((Path(tmp) / DESCRIPTOR_SET).read_bytes())
        if not API_REFERENCE.exists() or API_REFERENCE.read_text() != reference:
            diff.append(str(API_REFERENCE.relative_to(ROOT)))
        if diff:
            print("generated/ or docs/api.md is stale; run `make proto`:", *diff, sep="\n  ")
            return 1
        return 0
    if OUT.exists():
        shutil.rmtree(OUT)
    generate(OUT)
    API_REFERENCE.write_text(render((OUT / DESCRIPTOR_SET).read_bytes()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
