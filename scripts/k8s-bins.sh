#!/usr/bin/env bash
# Builds the real Kubernetes binaries Terrane's tests and `terrane lab up
# --k8s` run — kube-apiserver, kubectl, an etcd server new enough for them
# and, with --kubelet, kubelet — from the Go module proxy, into a cache
# directory outside the checkout keyed by version. Builds only what is
# missing; prints the directory on its last line. The build itself is Go
# (internal/k8sbins, `terrane lab k8s-bins`): this script only runs it.
#
# Usage: bash scripts/k8s-bins.sh [--kubelet]
#   TERRANE_K8S_BINS   the cache directory (default /var/cache/terrane/k8s/<k8s>-etcd<etcd>)
#   K8S_VERSION        k8s.io/kubernetes release (default v1.37.2)
#   ETCD_VERSION       go.etcd.io/etcd release (default v3.7.3)
#
# A cold build takes about 6 minutes on 2 cores (kubelet about 2.5 more) and
# peaks near 3 GB of memory; a warm cache costs only compiling terrane.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="/usr/local/go/bin:$PATH"
exec go run ./cmd/terrane lab k8s-bins "$@"
