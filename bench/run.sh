#!/usr/bin/env bash
# make bench: measure keter's speed goals (issue 10) on loopback and write
# BENCHMARKS.md. As root on Debian 12. Installs what it needs, builds keter,
# the benchmark app, the behave app and the driver, and runs bench/keterbench once per
# benchmark, each in a fresh sandbox systemd when PID 1 is not systemd (a
# stopped keter-nginx.service can stay loaded there and block the next
# keter). Always tears down.
#   bash bench/run.sh                      every benchmark, writes BENCHMARKS.md
#   BENCHES="deploy scale" bash bench/run.sh   a subset (deploy replace
#                                          throughput scale restart unpack
#                                          status acme recovery instances
#                                          behaviours gzip hosts coldstart access canary thousand reboot);
#                                          BENCH_MD= leaves BENCHMARKS.md alone
# Extra arguments go to every keterbench run (see bin/keterbench -h), e.g.
#   BENCHES="behaviours throughput" BENCH_MD= bash bench/run.sh -switches 5 -throughput-rounds 3 -wrk 5s
# behaviours: internal/behaveapp (bin/behaveapp) replaced -switches times
# (default 10) under internal/loadgen at every behaviour, GET and POST;
# goal 0 failed requests and 0 nginx reloads.
# throughput, gzip, access: -throughput-rounds (15) rounds of one -round (3s)
# wrk run per front door, the order rotating; the median of the per-round
# ratios with its spread, and each front door's CPU a request (nginx, app,
# wrk). Every plain nginx is put in the CPU groups keter's nginx is in. frontab (not in the default list): a diagnosis,
# keter's nginx against copies of its config without one feature each.
# hosts: three hosts (network namespaces, each its own systemd, keter and
# sshd) behind an nginx load balancer: keter deploy --hosts against three
# ssh keter deploy in a row, and failed requests through the balancer (goal 0).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "bench: run as root (it boots a systemd and starts units)" >&2; exit 1; }
BENCHES=${BENCHES:-deploy replace throughput scale restart unpack status acme recovery instances behaviours gzip hosts coldstart access canary thousand reboot}
BENCH_MD=${BENCH_MD-BENCHMARKS.md}

bash scripts/deps.sh
export PATH=/usr/local/go/bin:$PATH
make -s build
CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o bin/bench-app ./bench/app
CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o bin/behaveapp ./internal/behaveapp
go build -o bin/keterbench ./bench/keterbench
# The Warp app for the cold start benchmark (ghc and libghc-warp-dev from scripts/deps.sh).
if command -v ghc >/dev/null; then
	mkdir -p bin/warpapp-build
	ghc -O0 -threaded -outputdir bin/warpapp-build -o bin/warpapp internal/warpapp/Main.hs >/dev/null
fi

ROOT=/srv/keter-bench
WORK=$(mktemp -d /tmp/keter-bench.XXXXXX)
SANDBOX=""
cleanup() {
	[ -z "$SANDBOX" ] || bash scripts/sandbox.sh down "$SANDBOX"
	rm -rf "$WORK" "$ROOT"
}
trap cleanup EXIT
# The raw figures stay in bin/bench-state.json: the report can be rewritten from them with
#   bin/keterbench -only "" -state bin/bench-state.json -md BENCHMARKS.md

started=$(date +%s)
for b in $BENCHES; do
	if [ "$(cat /proc/1/comm)" = systemd ]; then
		bin/keterbench -only "$b" -state "$WORK/state.json" -table=false \
			-keter "$PWD/bin/keter" -app "$PWD/bin/bench-app" -behave-app "$PWD/bin/behaveapp" -warp-app "$PWD/bin/warpapp" -root "$ROOT" "$@" || true
	else
		SANDBOX=$WORK/sandbox-$b
		bash scripts/sandbox.sh up "$SANDBOX"
		bash scripts/sandbox.sh exec "$SANDBOX" bin/keterbench -only "$b" -state "$WORK/state.json" -table=false \
			-keter "$PWD/bin/keter" -app "$PWD/bin/bench-app" -behave-app "$PWD/bin/behaveapp" -warp-app "$PWD/bin/warpapp" -root "$ROOT" "$@" || true
		bash scripts/sandbox.sh down "$SANDBOX"
		SANDBOX=""
	fi
done
echo "bench: all runs took $(( $(date +%s) - started )) s"
# Report only: the table, and BENCHMARKS.md unless BENCH_MD is empty.
cp "$WORK/state.json" bin/bench-state.json 2>/dev/null || true
bin/keterbench -only "" -state "$WORK/state.json" -md "$BENCH_MD" -command "make bench"
