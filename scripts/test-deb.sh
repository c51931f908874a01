#!/usr/bin/env bash
# End-to-end test of the Debian package, as root on a test machine:
#   1. make deb (lintian: no errors, no warning without a justified override)
#   2. apt-get install ./dist/keter_*.deb on this machine; check the files
#   3. in a sandbox systemd holding the INSTALLED keter.service and
#      nginx.service: start both, drop a demo bundle into /opt/keter/incoming,
#      get the app through the system nginx with its Host header, then
#      reload keter
#   3b. automatic HTTPS in system mode: uncomment the packaged acme
#      example, point it at a Pebble (built with go install) that validates
#      HTTP-01 through the system nginx on port 80, and get the app over
#      HTTP/2 on 443 with a chain that verifies
#   4. reinstall inside the sandbox (an upgrade: the postinst restarts
#      keter.service) and check the app unit was not stopped and no
#      certificate was ordered again
#   5. apt-get remove: keter stops, /opt/keter and the config stay
#   6. apt-get purge: config and state gone, no keter-app-* unit active
# /opt/keter, ports 80 and 443 and the dpkg database are global: the test takes a
# lock, refuses to start if they are in use and cleans up after itself.
# The debtest Go package runs this script under `go test`.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

say() { echo "== test-deb: $*"; }
fail() { echo "test-deb: FAIL: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || fail "must run as root (it installs the package)"
if ! command -v go >/dev/null && [ -x /usr/local/go/bin/go ]; then
	export PATH=$PATH:/usr/local/go/bin
fi
for tool in go dpkg-buildpackage lintian apt-get curl nginx unshare nsenter flock ss; do
	command -v "$tool" >/dev/null || fail "$tool is missing (scripts/deps.sh installs it)"
done

exec 9>/var/tmp/keter-deb-test.lock
flock -w 1800 9 || fail "another test-deb.sh holds /var/tmp/keter-deb-test.lock"

if dpkg-query -W -f='${Status}' keter 2>/dev/null | grep -qv '^unknown ok not-installed$'; then
	fail "keter is already installed here (dpkg --purge keter first): this test installs and purges it"
fi
[ ! -e /opt/keter ] || fail "/opt/keter exists: this test needs it for itself (remove it first)"
[ ! -e /etc/keter ] || fail "/etc/keter exists: this test needs it for itself (remove it first)"
[ -z "$(ss -Hltn 'sport = :80')" ] || fail "port 80 is in use: the test's system nginx needs it"
[ -z "$(ss -Hltn 'sport = :443')" ] || fail "port 443 is in use: the test's system nginx needs it"

work=$(mktemp -d "${TMPDIR:-/tmp}/keter-debtest.XXXXXX")
sandbox=$work/sandbox
installed=0
pebble_pids=()
cleanup() {
	local rc=$?
	set +e
	[ ${#pebble_pids[@]} = 0 ] || kill "${pebble_pids[@]}" 2>/dev/null
	if [ $rc != 0 ] && [ -f "$work/pebble.log" ]; then
		echo "---- pebble" >&2
		tail -n 30 "$work/pebble.log" >&2
	fi
	if [ $rc != 0 ] && [ -f "$sandbox/pid" ]; then
		echo "---- sandbox journal (keter, nginx, apps)" >&2
		inside journalctl --no-pager -o short-monotonic -u keter.service -u nginx.service -u 'keter-app-*' 2>&1 | tail -n 80 >&2
		echo "---- /etc/nginx/conf.d/keter.conf" >&2
		cat /etc/nginx/conf.d/keter.conf >&2 2>/dev/null
	fi
	bash scripts/sandbox.sh down "$sandbox"
	if [ $installed = 1 ] && dpkg-query -W -f='${Status}' keter 2>/dev/null | grep -qv 'not-installed'; then
		DEBIAN_FRONTEND=noninteractive dpkg --purge keter >/dev/null
	fi
	rm -rf /opt/keter /etc/keter /etc/nginx/conf.d/keter.conf /etc/systemd/system/nginx.service.d/keter.conf "$work"
	[ -z "${reserved_orig+x}" ] || printf '%s\n' "$reserved_orig" >/proc/sys/net/ipv4/ip_local_reserved_ports
	exit $rc
}
trap cleanup EXIT

inside() { bash scripts/sandbox.sh exec "$sandbox" "$@"; }
apt_in_sandbox() { inside env DEBIAN_FRONTEND=noninteractive apt-get "$@"; }

# until SECONDS_MAX CMD...: poll CMD until it succeeds.
until_ok() {
	local max=$1; shift
	local end=$((SECONDS + max))
	until "$@"; do
		[ $SECONDS -lt $end ] || return 1
		sleep 0.5
	done
}

say "build"
DEB_LINTIAN_FAIL_ON=error,warning bash scripts/deb.sh
version=$(dpkg-parsechangelog -l debian/changelog -S Version)
upstream=${version%-*}
arch=$(dpkg-architecture -qDEB_HOST_ARCH)
deb=$root/dist/keter_${version}_${arch}.deb
[ -f "$deb" ] || fail "$deb was not built"

say "package metadata"
dpkg-deb -f "$deb" Depends | grep -Eq '(^|, )nginx( |,|$)' || fail "Depends lacks nginx: $(dpkg-deb -f "$deb" Depends)"
dpkg-deb -f "$deb" Depends | grep -Eq '(^|, )systemd( |,|$)' || fail "Depends lacks systemd"
dpkg-deb -f "$deb" Recommends | grep -c postgresql >/dev/null || fail "Recommends lacks postgresql"
dpkg-deb -I "$deb" conffiles | grep -cx /etc/keter/keter-config.yaml >/dev/null || fail "keter-config.yaml is not a conffile"

say "install on this machine"
# Someone else's reservation, which purge must leave; and the list before
# keter, which purge must restore.
reserved=/proc/sys/net/ipv4/ip_local_reserved_ports
reserved_before=$(cat "$reserved")
reserved_orig=$reserved_before
if [ -w "$reserved" ]; then
	printf '%s\n' "${reserved_before:+$reserved_before,}8089" >"$reserved"
	reserved_before=$(cat "$reserved")
fi
installed=1
DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$deb"
dpkg-query -W -f='${Status}\n' keter | grep -c 'install ok installed' >/dev/null || fail "keter is not installed"
out=$(/usr/bin/keter version) || fail "keter version failed"
grep -qF "$upstream" <<<"$out" || fail "keter version printed '$out', want $upstream"
/usr/bin/keter --help >/dev/null 2>&1 || fail "keter --help failed"
grep -Eq '^root: /opt/keter$' /etc/keter/keter-config.yaml || fail "config root is not /opt/keter"
grep -Eq '^  mode: system$' /etc/keter/keter-config.yaml || fail "config nginx mode is not system"
unit=""
for d in /lib/systemd/system /usr/lib/systemd/system; do
	[ -f "$d/keter.service" ] && unit=$d/keter.service && break
done
[ -n "$unit" ] || fail "keter.service is not installed in the systemd unit folder"
grep -qx 'ExecStart=/usr/bin/keter /etc/keter/keter-config.yaml' "$unit" || fail "keter.service ExecStart is wrong"
systemd-analyze verify "$unit" 2>&1 | grep -v -e 'network-online.target' -e 'nginx.service' | grep . &&
	fail "systemd-analyze verify complains about keter.service"
[ -f /usr/share/man/man1/keter.1.gz ] || fail "man page missing"
man -l /usr/share/man/man1/keter.1.gz 2>/dev/null | grep -c 'keter-config.yaml' >/dev/null || fail "man page does not render"
[ -d /opt/keter/incoming ] || fail "postinst did not create /opt/keter/incoming"
getent group keter >/dev/null || fail "postinst did not make the keter group"
[ "$(stat -c %a:%U:%G /opt/keter/incoming)" = 2770:root:keter ] ||
	fail "/opt/keter/incoming is $(stat -c %a:%U:%G /opt/keter/incoming), want 2770:root:keter"
dropin=/etc/systemd/system/nginx.service.d/keter.conf
grep -qx 'Restart=on-failure' "$dropin" || fail "postinst did not make nginx.service restart on failure ($dropin)"
[ -x /etc/keter/nginx-start-hook ] || fail "the nginx start hook is missing"
nginx_unit=/lib/systemd/system/nginx.service
[ -f "$nginx_unit" ] || nginx_unit=/usr/lib/systemd/system/nginx.service
[ -f "$nginx_unit" ] || fail "nginx.service is not installed"

say "run in a sandbox systemd"
SANDBOX_EXTRA_UNITS="$unit $nginx_unit /lib/systemd/system/network-online.target" \
	bash scripts/sandbox.sh up "$sandbox"
# This machine may carry Docker's /usr/sbin/policy-rc.d (exit 101: never
# touch services), which would turn the maintainer scripts' service actions
# into no-ops. Inside the sandbox's own mount namespace only, act like a
# plain Debian host, where any action is allowed.
printf '#!/bin/sh\nexit 0\n' >"$work/policy-rc.d"
chmod 755 "$work/policy-rc.d"
if [ -e /usr/sbin/policy-rc.d ]; then
	inside mount --bind "$work/policy-rc.d" /usr/sbin/policy-rc.d
fi
# The sandbox reads units from its own folder only: give it the drop-in.
mkdir -p "$sandbox/units/nginx.service.d"
cp "$dropin" "$sandbox/units/nginx.service.d/"
inside systemctl start nginx.service
inside systemctl start keter.service || fail "keter.service did not start"
[ "$(inside systemctl is-active keter.service)" = active ] || fail "keter.service is not active"

token=$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')
host=debtest-$token.test
msg="hello from the keter package $token"
mkdir -p "$work/bundle/config" "$work/bundle/bin"
CGO_ENABLED=0 go build -o "$work/bundle/bin/demoapp" ./internal/demoapp
printf 'exec: ../bin/demoapp\nhost: %s\nargs:\n  - --message\n  - "%s"\n' "$host" "$msg" >"$work/bundle/config/keter.yaml"
# Written next to incoming/ and renamed in, so keter never sees half a file.
tar -C "$work/bundle" -czf /opt/keter/.debtest.keter.part config bin
mv /opt/keter/.debtest.keter.part /opt/keter/incoming/debtest.keter

served() { [ "$(curl -s --max-time 5 -H "Host: $host" http://127.0.0.1/ 2>/dev/null)" = "$msg" ]; }
until_ok 180 served || fail "the app never answered through nginx with Host: $host"
say "served through nginx: $msg"
# The package's config leaves nginx.switch at auto: with nftables here the
# app is reached through keter's port map, not a port written into nginx.
if command -v nft >/dev/null; then
	nft list map ip keter fronts >/dev/null 2>&1 || fail "keter's port map (nft table ip keter) is missing while nftables is installed"
	inside journalctl -u keter.service -o cat | grep -c 'switching versions by an nftables port map' >/dev/null ||
		fail "keter.service did not switch by the port map"
fi
say "automatic HTTPS (ACME) through the system nginx, against Pebble"
pebble_version=v2.10.3
GOBIN=$work/pebble-bin go install github.com/letsencrypt/pebble/v2/cmd/pebble@$pebble_version \
	github.com/letsencrypt/pebble/v2/cmd/pebble-challtestsrv@$pebble_version || fail "building Pebble with go install"
pebble_mod=$(go env GOMODCACHE)/github.com/letsencrypt/pebble/v2@$pebble_version
# pick_port: a loopback port nothing listens on.
pick_port() {
	local p
	while :; do
		p=$(shuf -i 20000-32000 -n 1)
		[ -n "$(ss -Hltnu "sport = :$p")" ] || { echo "$p"; return; }
	done
}
acme_port=$(pick_port) mgmt_port=$(pick_port) dns_port=$(pick_port) chall_port=$(pick_port) pebble_tls=$(pick_port)
cat >"$work/pebble.json" <<PEBBLE
{"pebble": {"listenAddress": "127.0.0.1:$acme_port", "managementListenAddress": "127.0.0.1:$mgmt_port",
 "certificate": "$pebble_mod/test/certs/localhost/cert.pem", "privateKey": "$pebble_mod/test/certs/localhost/key.pem",
 "httpPort": 80, "tlsPort": $pebble_tls, "ocspResponderURL": "", "externalAccountBindingRequired": false,
 "retryAfter": {"authz": 1, "order": 1}, "keyAlgorithm": "ecdsa",
 "profiles": {"default": {"description": "keter debtest", "validityPeriod": 7776000}}}}
PEBBLE
# Every name resolves to 127.0.0.1, where the system nginx listens; only
# the validator's random sleep is off, validation itself is real.
"$work/pebble-bin/pebble-challtestsrv" -defaultIPv4 127.0.0.1 -defaultIPv6 "" -dnsserver "127.0.0.1:$dns_port" \
	-http01 "" -https01 "" -tlsalpn01 "" -doh "" -management "127.0.0.1:$chall_port" >"$work/pebble.log" 2>&1 &
pebble_pids+=($!)
PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT=0 "$work/pebble-bin/pebble" -config "$work/pebble.json" \
	-dnsserver "127.0.0.1:$dns_port" >>"$work/pebble.log" 2>&1 &
pebble_pids+=($!)
minica=$pebble_mod/test/certs/pebble.minica.pem
pebble_up() { curl -sf --cacert "$minica" "https://127.0.0.1:$acme_port/dir" >/dev/null; }
until_ok 30 pebble_up || fail "Pebble did not answer on port $acme_port"
curl -sf --cacert "$minica" "https://127.0.0.1:$mgmt_port/roots/0" >"$work/pebble-root.pem" || fail "reading Pebble's root"
cp "$minica" /etc/keter/acme-ca.pem
# The packaged example, uncommented, with Pebble as the CA.
sed -i -e 's|^#  - host: "\*"$|  - host: "*"|' -e 's|^#    port: 443$|    port: 443|' -e 's|^#    acme: true$|    acme: true|' \
	-e 's|^# acme:$|acme:|' -e 's|^#   email: .*|  email: ops@example.com|' \
	-e "s|^#   directory: .*|  directory: https://127.0.0.1:$acme_port/dir|" \
	-e 's|^#   trusted-roots: .*|  trusted-roots: /etc/keter/acme-ca.pem|' /etc/keter/keter-config.yaml
grep -qx '    acme: true' /etc/keter/keter-config.yaml || fail "the packaged config has no acme listener example to uncomment"
grep -qx 'acme:' /etc/keter/keter-config.yaml || fail "the packaged config has no acme example to uncomment"
inside systemctl restart keter.service || fail "keter.service did not start with the acme example"
# Verified against Pebble's root (curl fails otherwise), over HTTP/2.
served_tls() {
	[ "$(curl -s --max-time 5 --http2 --resolve "$host:443:127.0.0.1" --cacert "$work/pebble-root.pem" \
		-o "$work/tls-body" -w '%{http_code} %{http_version}' "https://$host/" 2>/dev/null)" = "200 2" ] &&
		[ "$(cat "$work/tls-body")" = "$msg" ]
}
until_ok 90 served_tls || fail "the app is not served over HTTP/2 with Pebble's certificate: $(curl -sv --resolve "$host:443:127.0.0.1" --cacert "$work/pebble-root.pem" "https://$host/" 2>&1 | tail -n 5)"
issued=$(grep -c 'Issued certificate serial' "$work/pebble.log")
say "served over HTTPS with Pebble's certificate ($issued issued)"
until_ok 60 served || fail "plain HTTP stopped serving with ACME on"
[ "$(stat -c %a /opt/keter/etc/acme)" = 700 ] || fail "/opt/keter/etc/acme is not 0700"
inside /usr/bin/keter status | grep -c "$host .*valid .*Pebble" >/dev/null || fail "keter status does not show the certificate: $(inside /usr/bin/keter status)"

app_units() { inside systemctl list-units --no-legend --plain --state=active 'keter-app-*' | awk '{print $1}'; }
app_unit=$(app_units | head -n 1)
[ -n "$app_unit" ] || fail "no active keter-app-* unit while the app is served"
cgroup=$(inside systemctl show -P ControlGroup "$app_unit")
case $cgroup in */keter.service/*) fail "$app_unit runs inside keter.service's cgroup ($cgroup)" ;; esac
app_invocation=$(inside systemctl show -P InvocationID "$app_unit")
keter_pid=$(inside systemctl show -P MainPID keter.service)

say "nginx SIGKILLed comes back (the package's drop-in) and serves the app again"
nginx_pid=$(inside systemctl show -P MainPID nginx.service)
[ "$nginx_pid" != 0 ] || fail "nginx.service has no main process"
inside kill -9 "$nginx_pid"
nginx_back() { p=$(inside systemctl show -P MainPID nginx.service); [ "$p" != 0 ] && [ "$p" != "$nginx_pid" ] && served; }
until_ok 30 nginx_back || fail "nginx.service did not come back serving after SIGKILL"

say "systemctl reload keter (ExecReload: SIGHUP)"
inside systemctl reload keter.service || fail "systemctl reload keter.service failed"
[ "$(inside systemctl is-active keter.service)" = active ] || fail "keter.service is not active after reload"
[ "$(inside systemctl show -P MainPID keter.service)" = "$keter_pid" ] || fail "reload restarted keter instead of reloading it"
until_ok 60 served || fail "the app is not served after reload"

say "upgrade (reinstall) inside the sandbox: keter restarts, $app_unit keeps running"
apt_in_sandbox install -y -q --reinstall "$deb"
[ "$(inside systemctl is-active keter.service)" = active ] || fail "keter.service is not active after the upgrade"
[ "$(inside systemctl show -P MainPID keter.service)" != "$keter_pid" ] || fail "the upgrade did not restart keter.service"
[ "$(inside systemctl show -P InvocationID "$app_unit")" = "$app_invocation" ] ||
	fail "the upgrade stopped or restarted $app_unit"
until_ok 60 served || fail "the app is not served after the upgrade"
until_ok 60 served_tls || fail "the app is not served over HTTPS after the upgrade"
# A restarted keter uses its stored certificate: give an order the time the
# first one took, then count.
sleep 3
[ "$(grep -c 'Issued certificate serial' "$work/pebble.log")" = "$issued" ] || fail "the upgrade ordered a certificate again"

say "apt-get remove"
apt_in_sandbox remove -y -q keter
[ ! -e /usr/bin/keter ] || fail "/usr/bin/keter is still there after remove"
state=$(inside systemctl is-active keter.service || true)
[ "$state" != active ] || fail "keter.service still active after remove"
[ -f /etc/keter/keter-config.yaml ] || fail "remove deleted the conffile"
[ -f /opt/keter/incoming/debtest.keter ] || fail "remove deleted the app's bundle"
[ -d /opt/keter/temp ] || fail "remove deleted /opt/keter/temp"
[ "$(inside systemctl is-active "$app_unit")" = active ] || fail "remove stopped $app_unit (apps must keep running until purge)"
if command -v nft >/dev/null; then
	say "an operator stops the app with keter removed: its stop hook takes its port map entry out"
	nft list map ip keter fronts | grep -c 'elements = ' >/dev/null || fail "the app has no entry in the port map before it is stopped"
	inside systemctl stop "$app_unit"
	! nft list map ip keter fronts | grep -c 'elements = ' >/dev/null || fail "the stopped app's entry is still in the port map: $(nft list map ip keter fronts)"
fi

say "apt-get purge"
apt_in_sandbox purge -y -q keter
dpkg-query -W -f='${Status}' keter 2>/dev/null | grep -c 'install ok installed' >/dev/null && fail "keter still installed"
[ ! -e /etc/keter ] || fail "/etc/keter is still there after purge"
[ ! -e /opt/keter/etc ] || fail "/opt/keter/etc is still there after purge"
[ ! -e /opt/keter/temp ] || fail "/opt/keter/temp is still there after purge"
[ ! -e /etc/nginx/conf.d/keter.conf ] || fail "/etc/nginx/conf.d/keter.conf is still there after purge"
[ -f /opt/keter/incoming/debtest.keter ] || fail "purge deleted the operator's bundle"
[ ! -e "$dropin" ] || fail "$dropin is still there after purge"
[ "$(cat "$reserved")" = "$reserved_before" ] ||
	fail "purge left ip_local_reserved_ports at '$(cat "$reserved")', want '$reserved_before' (as before install)"
if command -v nft >/dev/null && nft list table ip keter >/dev/null 2>&1; then
	fail "the nftables table ip keter is still there after purge"
fi
left=$(app_units)
[ -z "$left" ] || fail "app units still active after purge: $left"
[ "$(inside systemctl is-active keter-nginx.service || true)" != active ] || fail "keter-nginx.service still active"
served && fail "the app is still served after purge"
say "PASS"
