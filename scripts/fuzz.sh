#!/usr/bin/env bash
# Runs every native fuzz target of the repo for a bounded time, one after
# another (go test -fuzz takes one target of one package at a time).
# Usage: scripts/fuzz.sh [FUZZTIME]   (default 20s; called by make fuzz)
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${1:-20s}
GO=${GO:-go}

# `go test -list` prints matching names, then "ok <pkg> <time>" per package.
targets=()
pending=()
while read -r first second _; do
	case $first in
	Fuzz*) pending+=("$first") ;;
	ok)
		for f in "${pending[@]:-}"; do
			[ -n "$f" ] && targets+=("$second $f")
		done
		pending=()
		;;
	FAIL)
		[ -n "$second" ] && echo "fuzz.sh: warning: $second does not build; its fuzz targets are skipped" >&2
		pending=()
		;;
	esac
done < <($GO test -list '^Fuzz' ./... 2>/dev/null)

if [ ${#targets[@]} -eq 0 ]; then
	echo "fuzz.sh: no fuzz targets found" >&2
	exit 1
fi
failed=0
for t in "${targets[@]}"; do
	pkg=${t% *}
	name=${t#* }
	echo "== $pkg $name for $fuzztime"
	if ! $GO test -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" "$pkg"; then
		echo "fuzz.sh: $pkg $name FAILED (see testdata/fuzz/$name in that package)" >&2
		failed=1
	fi
done
exit $failed
