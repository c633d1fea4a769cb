#!/usr/bin/env bash
# Builds Terrane's container image as a docker-save archive, with no registry
# and no container engine: static binaries (CGO_ENABLED=0) packed by
# `terrane image build`. Usage: bash scripts/image.sh [OUT.tar] [TAG]
#   OUT.tar  default .build/terrane-image.tar
#   TAG      default terrane:<git describe>
# Load it with `ctr -n k8s.io images import OUT.tar` or `docker load -i OUT.tar`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out=${1:-.build/terrane-image.tar}
version=$(git describe --tags --always --dirty 2>/dev/null || echo dev)
tag=${2:-terrane:$version}
mkdir -p .build/image "$(dirname "$out")"
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=$version" -o .build/image/ ./cmd/terrane ./cmd/terrane-cni
.build/image/terrane image build --out "$out" --tag "$tag"
