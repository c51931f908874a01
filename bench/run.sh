#!/usr/bin/env bash
# make bench: measure keter's speed goals (issue 10) on loopback and write
# BENCHMARKS.md. As root on Debian 12. Installs what it needs, builds keter,
# the benchmark app and the driver, boots a sandbox systemd when PID 1 is not
# systemd, runs bench/keterbench inside it, and always tears down.
#   bash bench/run.sh                  every benchmark, writes BENCHMARKS.md
#   bash bench/run.sh -only deploy     a subset (see bin/keterbench -h); add
#                                      -md '' to leave BENCHMARKS.md alone
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "bench: run as root (it boots a systemd and starts units)" >&2; exit 1; }

bash scripts/deps.sh
export PATH=/usr/local/go/bin:$PATH
make -s build
CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o bin/bench-app ./bench/app
go build -o bin/keterbench ./bench/keterbench

ROOT=/srv/keter-bench
SANDBOX=""
cleanup() {
	[ -n "$SANDBOX" ] && bash scripts/sandbox.sh down "$SANDBOX"
	[ -n "$SANDBOX" ] && rm -rf "$SANDBOX"
	rm -rf "$ROOT"
}
trap cleanup EXIT

if [ "$(cat /proc/1/comm)" = systemd ]; then
	inside() { "$@"; }
else
	SANDBOX=$(mktemp -d /tmp/keter-bench-sandbox.XXXXXX)
	bash scripts/sandbox.sh up "$SANDBOX"
	inside() { bash scripts/sandbox.sh exec "$SANDBOX" "$@"; }
fi
inside bin/keterbench -keter "$PWD/bin/keter" -app "$PWD/bin/bench-app" -root "$ROOT" \
	-md BENCHMARKS.md -command "make bench" "$@"
