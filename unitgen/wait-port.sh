#!/bin/bash
# keter: wait until the app unit $2 accepts TCP connections on
# 127.0.0.1:$1. A sleeping app's proxy runs it before it starts
# (ExecStartPre, privileged): systemd-socket-proxyd connects once per
# client and does not retry, so it must not start before the app it starts
# with has bound its port. While the app sleeps its port is free, and
# another program may take it: a listener counts only if a process of the
# app's cgroup holds it, as keter's readiness check demands. The proxy's
# start timeout bounds the wait. bash, for /dev/tcp.
case $1 in '' | *[!0-9]*) echo "keter-wait-port: bad port '$1'" >&2; exit 2 ;; esac
case $2 in '' | */* | .*) echo "keter-wait-port: bad unit '$2'" >&2; exit 2 ;; esac
hex=$(printf '%04X' "$1")
cg=$(awk '$3 == "cgroup2" { print $2; exit }' /proc/self/mounts)
ours() {
	local inodes pid fd l
	inodes=$(awk -v p=":$hex" '$4 == "0A" && substr($2, length($2) - 4) == p { print "socket:[" $10 "]" }' /proc/net/tcp /proc/net/tcp6)
	[ -n "$inodes" ] || return 1
	for pid in $(cat "$cg$(systemctl show -p ControlGroup --value "$2" 2>/dev/null)/cgroup.procs" 2>/dev/null); do
		for fd in /proc/"$pid"/fd/*; do
			l=$(readlink "$fd" 2>/dev/null) || continue
			case " $inodes " in *" $l "*) return 0 ;; esac
		done
	done
	return 1
}
warned=
until (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && ours "$1" "$2"; do
	if [ -z "$warned" ] && (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && ! ours "$1" "$2"; then
		echo "keter-wait-port: port $1 answers, but not from $2; waiting for it" >&2
		warned=1
	fi
	sleep 0.01
done
