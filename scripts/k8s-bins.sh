#!/usr/bin/env bash
# Builds the real Kubernetes control-plane binaries the Kubernetes store's
# tests run against — kube-apiserver, kubectl and an etcd server new enough
# for them — from the Go module proxy, into a cache directory outside the
# checkout keyed by version. Does nothing when they are already there.
#
# Usage: bash scripts/k8s-bins.sh        prints the directory on its last line
#   TERRANE_K8S_BINS   the cache directory (default /var/cache/terrane/k8s/<k8s>-etcd<etcd>)
#   K8S_VERSION        k8s.io/kubernetes release (default v1.37.2)
#   ETCD_VERSION       go.etcd.io/etcd release (default v3.7.3)
#
# A cold build takes about 5 minutes on 2 cores and peaks near 3 GB of memory;
# kube-apiserver is built alone (-p 1 linking) to keep the peak there.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

K8S_VERSION=${K8S_VERSION:-v1.37.2}
ETCD_VERSION=${ETCD_VERSION:-v3.7.3}
# The staging modules (k8s.io/api, client-go, …) are tagged v0.<minor>.<patch>
# for Kubernetes v1.<minor>.<patch>.
STAGING_VERSION="v0.${K8S_VERSION#v1.}"
BINS=${TERRANE_K8S_BINS:-/var/cache/terrane/k8s/${K8S_VERSION}-etcd${ETCD_VERSION}}
export PATH="/usr/local/go/bin:$PATH"

have_all() {
	for b in kube-apiserver kubectl etcd; do
		[[ -x $BINS/$b ]] || return 1
	done
}
if have_all; then
	echo "k8s-bins: kube-apiserver $K8S_VERSION, kubectl, etcd $ETCD_VERSION already in $BINS"
	echo "$BINS"
	exit 0
fi

start=$SECONDS
say() { printf 'k8s-bins [%3ds] %s\n' $((SECONDS - start)) "$*"; }
mkdir -p "$BINS"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if [[ ! -x $BINS/etcd ]]; then
	say "etcd $ETCD_VERSION: building (about 30 s on a warm module cache, 1-2 min cold)"
	mkdir -p "$work/etcd"
	(
		cd "$work/etcd"
		cat >go.mod <<EOF
module terrane.local/etcdbin

go 1.26
EOF
		cat >tools.go <<'EOF'
//go:build tools

package tools

import (
	_ "go.etcd.io/etcd/etcdctl/v3/ctlv3"
	_ "go.etcd.io/etcd/server/v3/etcdmain"
)
EOF
		go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" "go.etcd.io/etcd/etcdctl/v3@$ETCD_VERSION" >/dev/null
		go mod tidy >/dev/null
		go build -trimpath -o "$BINS/etcd.tmp" go.etcd.io/etcd/server/v3
		mv "$BINS/etcd.tmp" "$BINS/etcd"
	)
	say "etcd: done"
fi

if [[ ! -x $BINS/kube-apiserver || ! -x $BINS/kubectl ]]; then
	say "kubernetes $K8S_VERSION: resolving its module and staging replaces"
	mkdir -p "$work/k8s"
	cd "$work/k8s"
	k8s_gomod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" |
		sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')
	if [[ -z $k8s_gomod || ! -f $k8s_gomod ]]; then
		echo "k8s-bins: cannot download k8s.io/kubernetes@$K8S_VERSION's go.mod" >&2
		exit 1
	fi
	# Every "k8s.io/X => ./staging/src/k8s.io/X" becomes "k8s.io/X => k8s.io/X v0.N.M".
	staging=$(grep -Eo 'k8s\.io/[A-Za-z0-9._/-]+ => \./staging/src/k8s\.io/[A-Za-z0-9._/-]+' "$k8s_gomod" |
		awk '{print $1}' | sort -u)
	n=$(wc -w <<<"$staging")
	if [[ $n -lt 20 ]]; then
		echo "k8s-bins: found only $n staging replaces in $k8s_gomod" >&2
		exit 1
	fi
	go_line=$(grep -m1 -E '^go [0-9]' "$k8s_gomod")
	{
		echo "module terrane.local/k8sbin"
		echo
		echo "$go_line"
		echo
		echo "require k8s.io/kubernetes $K8S_VERSION"
		echo
		echo "replace ("
		for m in $staging; do
			echo "	$m => $m $STAGING_VERSION"
		done
		echo ")"
	} >go.mod
	cat >tools.go <<'EOF'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
EOF
	say "kubernetes: $n staging modules pinned at $STAGING_VERSION; go mod tidy"
	go mod tidy >/dev/null
	commit=$(go list -m -json k8s.io/kubernetes | sed -n 's/.*"Version": "\(.*\)".*/\1/p' | head -1)
	IFS=. read -r major minor _ <<<"${K8S_VERSION#v}"
	pkg=k8s.io/component-base/version
	ldflags="-s -w -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
	ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z -X $pkg.gitCommit=$commit"
	# The client-go copy of the version variables feeds kubectl's client version.
	ldflags+=" -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION"
	ldflags+=" -X k8s.io/client-go/pkg/version.gitMajor=$major -X k8s.io/client-go/pkg/version.gitMinor=$minor"
	if [[ ! -x $BINS/kube-apiserver ]]; then
		say "kube-apiserver: building (about 4-5 min on 2 cores cold, 2.8 GB peak)"
		go build -trimpath -ldflags "$ldflags" -o "$BINS/kube-apiserver.tmp" k8s.io/kubernetes/cmd/kube-apiserver
		mv "$BINS/kube-apiserver.tmp" "$BINS/kube-apiserver"
		say "kube-apiserver: done"
	fi
	if [[ ! -x $BINS/kubectl ]]; then
		say "kubectl: building (about 1-2 min after kube-apiserver)"
		go build -trimpath -ldflags "$ldflags" -o "$BINS/kubectl.tmp" k8s.io/kubernetes/cmd/kubectl
		mv "$BINS/kubectl.tmp" "$BINS/kubectl"
		say "kubectl: done"
	fi
fi

"$BINS/kube-apiserver" --version
"$BINS/etcd" --version | head -1
say "all binaries in $BINS"
echo "$BINS"
