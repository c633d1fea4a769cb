#!/usr/bin/env bash
# Renders deploy/kubernetes/terrane.yaml from its one source, the
# kustomization in deploy/kubernetes/ (kubectl's built-in kustomize).
# Usage: bash scripts/render-manifest.sh [--check]
#   --check: render to a temporary file and fail if terrane.yaml differs.
# kubectl: the one scripts/k8s-bins.sh builds (the same kustomize the test
# renders with), else $KUBECTL, else kubectl on PATH.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bins=${TERRANE_K8S_BINS:-/var/cache/terrane/k8s/v1.37.2-etcdv3.7.3}
kubectl=${KUBECTL:-}
if [[ -z $kubectl ]]; then
	if [[ -x $bins/kubectl ]]; then
		kubectl=$bins/kubectl
	elif command -v kubectl >/dev/null 2>&1; then
		kubectl=kubectl
	else
		echo "render-manifest: no kubectl: build it with bash scripts/k8s-bins.sh or set KUBECTL" >&2
		exit 1
	fi
fi

out=deploy/kubernetes/terrane.yaml
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
{
	echo "# Terrane in one manifest: kubectl apply --server-side -f terrane.yaml (docs/kubernetes.md)."
	echo "# Rendered by scripts/render-manifest.sh from deploy/kubernetes/kustomization.yaml"
	echo "# and the files it lists; edit those and render again, never this file."
	"$kubectl" kustomize deploy/kubernetes
} >"$tmp"

if [[ ${1:-} == --check ]]; then
	if ! diff -u "$out" "$tmp"; then
		echo "render-manifest: $out is not the rendering of deploy/kubernetes/kustomization.yaml: run bash scripts/render-manifest.sh" >&2
		exit 1
	fi
	exit 0
fi
cp "$tmp" "$out"
echo "wrote $out"
