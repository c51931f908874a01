#!/usr/bin/env bash
# The whole test suite: install what it needs, static checks, then every
# Go test (unit and integration) inside a throwaway systemd.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
export PATH=/usr/local/go/bin:$PATH
bash scripts/services.sh

echo "== gofmt, go vet"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
[ -z "$unformatted" ] || { echo "gofmt needed on: $unformatted" >&2; exit 1; }
go vet ./...
go build ./...

echo "== go test (inside the sandbox systemd)"
bash scripts/sandbox.sh run -- env CI="${CI:-}" PATH="$PATH" HOME="${HOME:-/root}" \
	go test -p 1 -count=1 -timeout 60m ${GOTESTFLAGS:-} ./...
