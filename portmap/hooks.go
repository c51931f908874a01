package portmap

import (
	_ "embed"
	"strconv"
)

// startHook binds table (its $1) to the cgroup it runs in. The Debian
// package ships it as /etc/keter/nginx-start-hook for the system's
// nginx.service.
//
//go:embed start-hook.sh
var startHook string

// StartHook is the command nginx's unit runs with full privileges before
// each start (ExecStartPre), so the rule matches the cgroup this start
// made, whether keter runs or not: it reads its own cgroup, which is
// nginx's. It needs only sh, sed, awk, tr, wc and nft.
func StartHook(table string) []string {
	return []string{"/bin/sh", "-c", startHook, "keter-portmap", table}
}

// StopHook is the command an app unit runs with full privileges after each
// stop (ExecStopPost). Only a stop for good (a stop job: an operator's
// systemctl stop, keter retiring the version) takes the unit's element
// out; an automatic restart keeps it, as the app comes back on the same
// port. The delete is conditional and atomic: adding the element fails
// the whole transaction when front already points elsewhere (keter
// switched it to a newer version). It needs only sh, systemctl, awk and
// nft, so it works after keter itself was removed.
func StopHook(table string, front, port int, unit string) []string {
	// Death by a signal a stop does not send is a crash, followed by an
	// automatic restart: nothing to ask systemd, the restart is waiting.
	// (A stop's SIGTERM counts as success; an app may exit non-zero on it.)
	const script = `case $SERVICE_RESULT in signal | core-dump | watchdog) exit 0 ;; esac
[ "$(systemctl list-jobs --no-legend --plain "$4" 2>/dev/null | awk '{ print $3; exit }')" = stop ] || exit 0
nft -f - 2>/dev/null <<EOF || true
add element ip $1 fronts { $2 : $3 }
delete element ip $1 fronts { $2 }
EOF`
	return []string{"/bin/sh", "-c", script, "keter-unmap", table, strconv.Itoa(front), strconv.Itoa(port), unit}
}
