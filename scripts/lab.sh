#!/usr/bin/env bash
# A whole Terrane cluster on this machine, in one command: installs what the
# lab needs, builds bin/terrane and bin/terrane-cni, and runs
# `bin/terrane lab up "$@"` (as root: the lab creates network namespaces).
#
#   bash scripts/lab.sh                          # the default scenario: flat-l2
#   bash scripts/lab.sh --scenario two-racks     # or two-networks, or a file
#   bin/terrane lab probe · bin/terrane lab routes NODE · bin/terrane lab down
#
# Needs Go >= 1.26 on PATH; on Debian/Ubuntu it installs iproute2,
# iputils-ping and bird2 (and frr for l3-frr and hybrid) with apt-get when
# they are missing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '==> %s\n' "$*" >&2; }

if [[ $(id -u) -ne 0 ]]; then
	echo "scripts/lab.sh: the lab needs root (network namespaces, bridges, veth pairs): run it as root, e.g. sudo bash scripts/lab.sh where sudo is installed." >&2
	echo "Without root, 'go run ./cmd/terrane plan --topology examples/flat-l2.yaml' shows the plan." >&2
	exit 1
fi

missing=()
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
command -v ping >/dev/null 2>&1 || missing+=(iputils-ping)
command -v bird >/dev/null 2>&1 || missing+=(bird2) # BGP scenarios' routers (l3-bgp)
if [[ " $* " == *frr* || " $* " == *hybrid* ]]; then # FRR routers (l3-frr, hybrid)
	[[ -x /usr/lib/frr/bgpd ]] || missing+=(frr)
fi
if [[ " $* " == *" real "* || " $* " == *"--kubelet=real"* ]]; then # lab up --k8s --kubelet real
	command -v containerd >/dev/null 2>&1 || missing+=(containerd)
	command -v runc >/dev/null 2>&1 || missing+=(runc)
fi
if ((${#missing[@]})); then
	if ! command -v apt-get >/dev/null 2>&1; then
		echo "scripts/lab.sh: install ${missing[*]} (no apt-get here)" >&2
		exit 1
	fi
	step "apt-get install ${missing[*]}"
	apt-get update -q >/dev/null
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null
fi

if ! command -v go >/dev/null 2>&1; then
	for d in /usr/local/go/bin "$HOME/go/bin"; do
		[[ -x $d/go ]] && PATH="$d:$PATH"
	done
fi
if ! command -v go >/dev/null 2>&1; then
	echo "scripts/lab.sh: Go 1.26 or newer is needed to build terrane (https://go.dev/dl/)" >&2
	exit 1
fi

step "go build -o bin/ ./cmd/terrane ./cmd/terrane-cni"
mkdir -p bin
go build -o bin/ ./cmd/terrane ./cmd/terrane-cni

step "bin/terrane lab up $*"
exec bin/terrane lab up "$@"
