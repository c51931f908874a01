#!/usr/bin/env bash
# Install everything keter's build, tests, demo and benchmarks need on a
# Debian 12 / Ubuntu machine, as root. Safe to run again.
set -euo pipefail
[ "$(id -u)" = 0 ] || { echo "deps.sh: run as root" >&2; exit 1; }

PKGS=(
	make git ca-certificates curl util-linux procps   # build + sandbox (unshare, nsenter)
	systemd dbus                                      # the real systemd the tests boot
	iproute2 passwd                                   # status tests: a network namespace, temporary users
	nginx-light                                       # the front door
	nftables                                          # the port map that switches versions
	postgresql                                        # the postgres plugin's tests
	wrk                                               # load in tests and benchmarks
	dpkg-dev debhelper lintian fakeroot               # make deb
	chromium                                          # status page browser test
	nodejs openjdk-17-jre-headless python3 php-cli    # real runtimes the e2e tests deploy
	ghc libghc-warp-dev                               # builds the GHC Warp test app
	openssh-client openssh-server                     # keter deploy --hosts and its multi-host e2e test
	zstd                                              # a bundle made with tar --zstd (e2e)
)
missing=()
for p in "${PKGS[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "deps.sh: installing ${missing[*]}"
	apt-get update -qq
	# openssh-server's postinst would start a real sshd on port 22: the
	# tests start their own inside network namespaces, so keep services down.
	own_policy=
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod +x /usr/sbin/policy-rc.d
		own_policy=1
	fi
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
	[ -z "$own_policy" ] || rm -f /usr/sbin/policy-rc.d
fi

if ! command -v go >/dev/null && [ -x /usr/local/go/bin/go ]; then
	export PATH=/usr/local/go/bin:$PATH
fi
command -v go >/dev/null || {
	echo "deps.sh: Go is missing: install Go 1.22 or newer (it fetches the toolchain go.mod asks for)" >&2
	exit 1
}
