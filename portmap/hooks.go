package portmap

import (
	_ "embed"
	"path/filepath"
	"strconv"
)

// Hook scripts, which keter writes into its hooks folder (Hooks) and
// units run by path: systemd 252 writes a transient unit's command lines
// back with escapes its own parser does not read (a "$" becomes "\$"), so
// after a daemon-reload an inline script would be garbled.
var (
	// startHook binds table ($1) to the cgroup it runs in. The Debian
	// package ships it as /etc/keter/nginx-start-hook for the system's
	// nginx.service.
	//
	//go:embed start-hook.sh
	startHook string
	//go:embed stop-hook.sh
	stopHook string
)

// Hook file names in the hooks folder.
const (
	StartHookFile = "nginx-start"
	StopHookFile  = "port-unmap"
)

// Hooks are the scripts by file name.
func Hooks() map[string]string {
	return map[string]string{StartHookFile: startHook, StopHookFile: stopHook}
}

// StartHook is the command nginx's unit runs before each start
// (ExecStartPre), so the rule matches the cgroup this start made, whether
// keter runs or not: it reads its own cgroup, which is nginx's. It needs
// only sh, sed, awk, tr, wc and nft.
func StartHook(hooks, table string) []string {
	return []string{"/bin/sh", filepath.Join(hooks, StartHookFile), table}
}

// StopHook is the command an app unit runs with full privileges after each
// stop (ExecStopPost): see stop-hook.sh.
func StopHook(hooks, table string, front, port int, unit string) []string {
	return []string{"/bin/sh", filepath.Join(hooks, StopHookFile), table, strconv.Itoa(front), strconv.Itoa(port), unit}
}
