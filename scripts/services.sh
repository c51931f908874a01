#!/usr/bin/env bash
# Start the host services the tests use (PID 1 here is not systemd, so the
# packages' own units do not run). Safe to run again.
set -euo pipefail
if command -v pg_lsclusters >/dev/null; then
	pg_lsclusters --no-header | while read -r ver name _port status _; do
		[ "$status" = online ] || pg_ctlcluster --skip-systemctl-redirect "$ver" "$name" start
	done
fi
