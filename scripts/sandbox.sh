#!/usr/bin/env bash
# Boot a throwaway systemd as PID 1 of a new PID + mount namespace, for tests
# on machines whose PID 1 is not systemd (see shared/notes/systemd-sandbox.md).
#
#   sandbox.sh run -- CMD...   boot, run CMD inside the namespace, always tear
#                              down; exits with CMD's status
#   sandbox.sh up DIR          boot in DIR (host PID of systemd in DIR/pid)
#   sandbox.sh exec DIR CMD... run CMD inside a booted sandbox
#   sandbox.sh down DIR        kill the sandbox
#
# Inside, /run is the sandbox's own (DIR/run); the host's /run/postgresql is
# bound into it so the local PostgreSQL socket still works. Extra unit files
# (e.g. an installed keter.service) can be listed in SANDBOX_EXTRA_UNITS.
set -euo pipefail

die() { echo "sandbox: $*" >&2; exit 1; }

# Units a transient service needs (DefaultDependencies) plus journald.
MIN_UNITS="sysinit.target basic.target shutdown.target sockets.target timers.target
paths.target slices.target local-fs.target multi-user.target network.target
systemd-journald.socket systemd-journald.service systemd-journald-dev-log.socket"

boot() {
	local dir=$1
	[ "$(id -u)" = 0 ] || die "must run as root"
	[ -x /lib/systemd/systemd ] || die "/lib/systemd/systemd missing: apt-get install systemd"
	command -v unshare >/dev/null || die "unshare missing: apt-get install util-linux"
	mkdir -p "$dir/units"
	# A stale private socket would make the readiness wait return too early.
	rm -rf "$dir/run"
	mkdir -p "$dir/run"
	for u in $MIN_UNITS; do
		[ -e "/lib/systemd/system/$u" ] && cp "/lib/systemd/system/$u" "$dir/units/"
	done
	for u in ${SANDBOX_EXTRA_UNITS:-}; do cp "$u" "$dir/units/"; done
	cat >"$dir/units/keter-test.target" <<-UNIT
	[Unit]
	Description=keter test sandbox
	Wants=systemd-journald.socket systemd-journald.service
	UNIT
	cat >"$dir/boot" <<-BOOT
	#!/bin/sh
	set -e
	mount -t proc proc /proc
	if [ -d /run/postgresql ]; then
	  mkdir -p "$dir/run/postgresql"
	  mount --bind /run/postgresql "$dir/run/postgresql"
	fi
	mount --rbind "$dir/run" /run
	# NEVER drop SYSTEMD_UNIT_PATH: the default path runs tmpfiles, which wipes the host's /tmp.
	# /run/systemd/transient (the sandbox's own /run) keeps transient units whole across daemon-reload.
	exec env container=keter-test SYSTEMD_UNIT_PATH="$dir/units:/run/systemd/transient" /lib/systemd/systemd --system --unit=keter-test.target
	BOOT
	chmod +x "$dir/boot"
	setsid unshare --pid --fork --mount --propagation private "$dir/boot" \
		</dev/null >"$dir/systemd.log" 2>&1 &
	local unshare_pid=$!
	local pid=""
	for _ in $(seq 1 200); do
		pid=$(pgrep -P "$unshare_pid" -x systemd || true)
		[ -n "$pid" ] && [ -S "$dir/run/systemd/private" ] && break
		kill -0 "$unshare_pid" 2>/dev/null || { cat "$dir/systemd.log" >&2; die "systemd exited during boot"; }
		sleep 0.05
	done
	[ -n "$pid" ] && [ -S "$dir/run/systemd/private" ] || { cat "$dir/systemd.log" >&2; die "systemd did not come up"; }
	echo "$pid" >"$dir/pid"
	for _ in $(seq 1 200); do
		state=$(nsenter -t "$pid" -m -p systemctl is-system-running 2>/dev/null || true)
		case $state in running|degraded) return 0 ;; esac
		sleep 0.05
	done
	die "systemd did not finish booting (state: ${state:-unknown})"
}

inside() {
	local dir=$1; shift
	nsenter -t "$(cat "$dir/pid")" -m -p --wd="$PWD" -- "$@"
}

down() {
	local dir=$1
	[ -f "$dir/pid" ] || return 0
	kill -9 "$(cat "$dir/pid")" 2>/dev/null || true
	rm -f "$dir/pid"
}

cmd=${1:-}; shift || true
case $cmd in
run)
	[ "${1:-}" = "--" ] && shift
	[ $# -gt 0 ] || die "usage: sandbox.sh run -- CMD..."
	dir=$(mktemp -d /tmp/keter-sandbox.XXXXXX)
	trap 'down "$dir"' EXIT
	boot "$dir"
	set +e
	inside "$dir" env KETER_SANDBOX="$dir" "$@"
	rc=$?
	set -e
	exit $rc
	;;
up) boot "$1" ;;
exec) dir=$1; shift; inside "$dir" env KETER_SANDBOX="$dir" "$@" ;;
down) down "$1" ;;
*) die "usage: sandbox.sh run -- CMD... | up DIR | exec DIR CMD... | down DIR" ;;
esac
