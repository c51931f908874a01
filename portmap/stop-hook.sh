#!/bin/sh
# keter: after an app unit stops, take its port out of the port map: args
# TABLE FRONT PORT UNIT. The unit runs it with full privileges
# (ExecStopPost) after every stop, automatic restarts too.
#
# Only a stop for good (a stop job: an operator's systemctl stop, keter
# retiring the version) takes the elements out: FRONT's, and those of the
# stanza's spare fronts the map sends to PORT too. After a crash systemd
# brings the app back on the same port. Each delete is conditional and
# atomic: adding the element fails its transaction when the front already
# points elsewhere (keter switched it to a newer version). It needs only
# sh, systemctl, tr, sed, awk and nft, so it works with keter stopped or
# removed.
case $SERVICE_RESULT in
# A death by a signal a stop does not send is a crash: nothing to ask.
signal | core-dump | watchdog) exit 0 ;;
esac
case $1$2$3 in
'' | *[!A-Za-z0-9_]*) echo "keter-unmap: bad arguments" >&2; exit 2 ;;
esac
[ "$(systemctl list-jobs --no-legend --plain "$4" 2>/dev/null | awk '{ print $3; exit }')" = stop ] || exit 0
fronts=$(nft list map ip "$1" fronts 2>/dev/null | tr -d '\n' |
	sed -n 's/.*elements = {\([^}]*\)}.*/\1/p' | tr ',' '\n' |
	awk -v p="$3" '$2 == ":" && $3 == p { print $1 }')
for f in $2 $fronts; do
	case $f in '' | *[!0-9]*) continue ;; esac
	nft -f - 2>/dev/null <<EOF2 || true
add element ip $1 fronts { $f : $3 }
delete element ip $1 fronts { $f }
EOF2
done
