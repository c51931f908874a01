#!/usr/bin/env bash
# What systemd's sandbox costs per start of an app unit: the CPU of the
# unit's processes before and at exec (systemd's forked child sets up the
# mount namespace, the user namespace and the seccomp filter there) and
# systemd's own, per start of /bin/true, for the hardening keter gives a
# webapp (unitgen/hardening.go, unitgen/isolation.go: keep the list below
# in step), then for that set without one property at a time, and with the
# own-folder ExecStartPre. As root on Debian 12; boots a sandbox systemd
# when PID 1 is not systemd. CPU is read from the sandbox's PID 1
# (utime+stime, and cutime+cstime of the children it reaped), in 10 ms
# ticks: use N of 20 or more.
#   bash bench/sandbox-cost.sh          N=30 starts per set
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-30}
if [ "${1:-}" != --inside ]; then
	[ "$(id -u)" = 0 ] || { echo "sandbox-cost: run as root" >&2; exit 1; }
	if [ "$(cat /proc/1/comm)" = systemd ]; then
		exec env N="$N" bash "$0" --inside
	fi
	exec bash scripts/sandbox.sh run -- env N="$N" bash "$PWD/$0" --inside
fi

root=/opt/keter-sandbox-cost
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/temp/app1" "$root/hooks"
cp unitgen/own-folder.sh "$root/hooks/own-folder"
for f in $(seq 1 40); do echo x >"$root/temp/app1/f$f"; done
state=/var/lib/private/keter-sandbox-cost

base=(-p DynamicUser=yes -p User=keter-sandbox-cost -p StateDirectory=keter-sandbox-cost -p RemainAfterExit=yes)
hard=(-p NoNewPrivileges=yes -p CapabilityBoundingSet= -p AmbientCapabilities= -p ProtectSystem=strict -p ProtectHome=yes
	-p PrivateTmp=yes -p PrivateDevices=yes -p PrivateUsers=yes -p ProtectKernelTunables=yes -p ProtectKernelModules=yes
	-p ProtectKernelLogs=yes -p ProtectControlGroups=yes -p ProtectClock=yes -p ProtectHostname=yes -p ProtectProc=invisible
	-p "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6" -p RestrictNamespaces=yes -p RestrictRealtime=yes -p RestrictSUIDSGID=yes
	-p LockPersonality=yes -p RemoveIPC=yes -p SystemCallArchitectures=native -p SystemCallFilter=@system-service
	-p "SystemCallFilter=~@privileged @resources" -p SystemCallErrorNumber=EPERM -p UMask=0077
	-p "TemporaryFileSystem=$root:ro" -p "BindReadOnlyPaths=$root/hooks" -p "BindPaths=$root/temp/app1" -p InaccessiblePaths=-/run/keter)

ticks() { awk '{print $14+$15, $16+$17}' /proc/1/stat; }

# measure NAME PROPS...: N starts of /bin/true, each waited for and stopped.
measure() {
	local name=$1 s0 c0 s1 c1 u i
	shift
	read -r s0 c0 < <(ticks)
	for i in $(seq 1 "$N"); do
		u=keter-sandbox-cost-$i
		systemd-run -q --unit="$u" "${base[@]}" "$@" /bin/true
		for _ in $(seq 1 200); do
			[ "$(systemctl show -p SubState --value "$u")" = exited ] && break
			sleep 0.05
		done
		systemctl stop "$u"
	done
	read -r s1 c1 < <(ticks)
	printf '%-34s unit processes %6.1f ms, systemd %5.1f ms per start\n' "$name" \
		"$(echo "($c1-$c0)*10/$N" | bc -l)" "$(echo "($s1-$s0)*10/$N" | bc -l)"
}

# without NAME: the hardening set less the properties called NAME.
without() {
	local out=() i=0
	while [ $i -lt ${#hard[@]} ]; do
		case ${hard[$((i + 1))]%%=*} in "$1") ;; *) out+=(-p "${hard[$((i + 1))]}") ;; esac
		i=$((i + 2))
	done
	printf '%s\0' "${out[@]}"
}

echo "systemd $(systemctl --version | awk 'NR==1{print $2}'), $(wc -l </proc/self/mountinfo) mounts, $N starts per set"
measure "no sandbox (DynamicUser only)"
measure "keter's hardening" "${hard[@]}"
measure "  + own-folder ExecStartPre" "${hard[@]}" -p "ExecStartPre=+/bin/sh $root/hooks/own-folder $root/temp/app1 $state"
for p in ProtectKernelTunables ProtectHome SystemCallFilter ProtectKernelLogs ProtectProc PrivateDevices PrivateUsers \
	PrivateTmp ProtectControlGroups ProtectSystem TemporaryFileSystem InaccessiblePaths BindPaths BindReadOnlyPaths \
	ProtectClock ProtectHostname; do
	mapfile -d '' args < <(without "$p")
	measure "  without $p" "${args[@]}"
done
