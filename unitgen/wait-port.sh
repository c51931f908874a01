#!/bin/bash
# keter: wait until something accepts TCP connections on 127.0.0.1:$1.
# A sleeping app's proxy runs it before it starts (ExecStartPre):
# systemd-socket-proxyd connects once per client and does not retry, so it
# must not start before the app it starts with has bound its port. The
# proxy's start timeout bounds the wait. bash, for /dev/tcp.
case $1 in '' | *[!0-9]*) echo "keter-wait-port: bad port '$1'" >&2; exit 2 ;; esac
until (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; do
	sleep 0.01
done
