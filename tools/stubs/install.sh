#!/usr/bin/env bash
# Installs the protoc plugins buf.gen.yaml runs (`make stubs`, .ci/run), all from registry packages:
# Debian's Go toolchain, Go protobuf/gRPC plugins and libraries, protoc and the grpc-java plugin;
# npm's protoc-gen-es (tools/stubs/package.json). Installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/../.."

# protoc-gen-go/-go-grpc and grpc_java_plugin (plus protoc, through their dependencies), Go 1.19,
# and the Go sources the stubs and examples/go/client compile against offline (GOPATH mode). grpc
# 1.33 accepts either golang/protobuf; only 1.5 (APIv2 underneath) decodes protoc-gen-go's messages,
# and it replaces 1.3 when installed.
packages=(
  golang-go protoc-gen-go protoc-gen-go-grpc protobuf-compiler-grpc-java-plugin
  golang-google-protobuf-dev golang-google-grpc-dev golang-google-genproto-dev
  golang-github-golang-protobuf-1-5-dev
)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'ok installed' || missing+=("$package")
done

if ((${#missing[@]})); then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    echo "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq </dev/null
    apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=600 "${missing[@]}" </dev/null >/dev/null
  else
    echo "missing Debian packages: ${missing[*]} (apt-get install them as root)" >&2
    exit 1
  fi
fi

if [[ ! -x tools/stubs/node_modules/.bin/protoc-gen-es ]]; then
  command -v npm >/dev/null || { echo "npm is missing (Debian: apt-get install npm)" >&2; exit 1; }
  npm ci --prefix tools/stubs --no-audit --no-fund --loglevel=error </dev/null
fi
