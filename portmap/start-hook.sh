#!/bin/sh
# keter: bind the nftables port map of table $1 to the cgroup this runs in.
# nginx's unit runs it before each start (ExecStartPre, with full
# privileges), so only that nginx's connections to front ports are
# redirected; nft resolves the cgroup when the rule is loaded, and each
# start makes a new one.
set -e
case $1 in
'' | *[!A-Za-z0-9_]*) echo "keter-portmap: bad table name '$1'" >&2; exit 2 ;;
esac
p=$(sed -n 's|^0::||p' /proc/self/cgroup)
p=${p#/}
[ -n "$p" ] || exit 0
# nft looks the path up under /sys/fs/cgroup; a hybrid host mounts v2 below.
m=$(awk '$3 == "cgroup2" { print $2; exit }' /proc/self/mounts)
m=${m#/sys/fs/cgroup}
m=${m#/}
l=$(printf %s "/$p" | tr -cd / | wc -c)
nft -f - <<EOF2
add table ip $1
add map ip $1 fronts { type inet_service : inet_service; }
add chain ip $1 output { type nat hook output priority -100; policy accept; }
flush chain ip $1 output
add rule ip $1 output socket cgroupv2 level $l "${m:+$m/}$p" ip daddr 127.0.0.1 tcp dport @fronts dnat ip to 127.0.0.1 : tcp dport map @fronts
EOF2
