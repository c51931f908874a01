#!/usr/bin/env bash
# Set up and run keter on a demo app, as root, on a fresh Debian/Ubuntu
# machine. Boots a sandbox systemd when PID 1 is not systemd.
#   bash scripts/demo.sh         start (again) and print a curl to try
#   bash scripts/demo.sh stop    stop keter, the demo app and the sandbox
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=/srv/keter-demo
SANDBOX=/tmp/keter-demo-sandbox
PORT=${KETER_DEMO_PORT:-8080}
HOST=demo.keter.test

if [ "$(cat /proc/1/comm)" = systemd ]; then
	inside() { "$@"; }
else
	inside() { bash scripts/sandbox.sh exec "$SANDBOX" "$@"; }
fi

if [ "${1:-}" = stop ]; then
	inside systemctl stop keter-demo.service 'keter-app-*' keter-nginx.service 2>/dev/null || true
	if command -v nft >/dev/null; then
		printf 'add table ip keter_demo\ndelete table ip keter_demo\n' | nft -f - || true
	fi
	[ "$(cat /proc/1/comm)" = systemd ] || bash scripts/sandbox.sh down "$SANDBOX"
	echo "demo stopped"
	exit 0
fi

bash scripts/deps.sh
export PATH=/usr/local/go/bin:$PATH
make -s build
mkdir -p "$ROOT/incoming" /usr/local/lib/keter-demo
chmod 755 "$ROOT"
install -m 755 bin/keter /usr/local/lib/keter-demo/keter
cat >"$ROOT/keter-config.yaml" <<YAML
root: $ROOT
listeners:
  - host: 127.0.0.1
    port: $PORT
graceful-drain-micros: 1000000
nginx:
  mode: managed
  # The port map's table is the host's, sandbox or not: keep clear of a real keter's.
  nft-table: keter_demo
YAML

if [ "$(cat /proc/1/comm)" != systemd ] && ! { [ -f "$SANDBOX/pid" ] && kill -0 "$(cat "$SANDBOX/pid")" 2>/dev/null; }; then
	echo "PID 1 is not systemd: booting a sandbox systemd in $SANDBOX"
	bash scripts/sandbox.sh up "$SANDBOX"
fi
inside systemctl stop keter-demo.service 2>/dev/null || true
inside systemd-run --unit keter-demo.service -p Type=notify -p Restart=on-failure -p KillMode=process \
	/usr/local/lib/keter-demo/keter run "$ROOT/keter-config.yaml"

# The demo bundle: the demo app and a flat-format config/keter.yaml.
work=$(mktemp -d)
mkdir -p "$work/config" "$work/bin"
CGO_ENABLED=0 go build -o "$work/bin/demoapp" ./internal/demoapp
printf 'exec: ../bin/demoapp\nargs: ["--message", "Hello from a keter app"]\nhost: %s\n' "$HOST" >"$work/config/keter.yaml"
/usr/local/lib/keter-demo/keter bundle "$work" -o "$work/demo.keter"
cp "$work/demo.keter" "$ROOT/incoming/.demo.keter.tmp" && mv "$ROOT/incoming/.demo.keter.tmp" "$ROOT/incoming/demo.keter"
rm -rf "$work"

for _ in $(seq 1 200); do
	if curl -fsS -H "Host: $HOST" "http://127.0.0.1:$PORT/" >/dev/null 2>&1; then break; fi
	sleep 0.1
done
echo
echo "keter is running (unit keter-demo.service) with root $ROOT; the demo app is live:"
echo "  curl -H 'Host: $HOST' http://127.0.0.1:$PORT/"
curl -sS -H "Host: $HOST" "http://127.0.0.1:$PORT/" || true
echo "Logs:  $( [ "$(cat /proc/1/comm)" = systemd ] || echo "bash scripts/sandbox.sh exec $SANDBOX " )journalctl -u 'keter-app-*' -u keter-demo.service"
echo "Stop:  bash scripts/demo.sh stop"
