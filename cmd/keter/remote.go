package main

import (
	"context"
	"os"
	"time"

	"github.com/keter-systemd/keter/fleet"
)

func init() {
	register(command{"remote", "session|status|maintenance", "a host's side of --hosts (run by ssh)", cmdRemote})
}

// cmdRemote is what `keter … --hosts` runs on each host over ssh; its
// answers are JSON lines on stdout (see package fleet).
func cmdRemote(ctx context.Context, args []string) int {
	fs := newFlags("remote", "[-c CONFIG] session APP | status | maintenance on|off APP",
		"The host's side of deploy, rollback, status and maintenance --hosts, which\nrun it over ssh: session holds APP's rollout lock for as long as its stdin\nis open and serves deploy and rollback commands read from it.")
	cfgPath := configFlag(fs)
	var h fleet.Holder
	fs.StringVar(&h.User, "holder-user", "", "session: the operator's user")
	fs.StringVar(&h.Machine, "holder-machine", "", "session: the operator's machine")
	fs.IntVar(&h.PID, "holder-pid", 0, "session: the operator's keter process")
	fs.StringVar(&h.Rollout, "rollout", "", "session: the rollout's id")
	wait := fs.Bool("wait", false, "session: wait for the lock instead of refusing")
	timeout := fs.Duration("timeout", 15*time.Minute, "session: give up waiting for one deploy after this long")
	message := fs.String("message", "", "maintenance on: the page's text")
	pos, code, ok := parseArgs(fs, args, 1, 3)
	if !ok {
		return code
	}
	cfg, c, err := connect(*cfgPath)
	if err != nil {
		return fail("%v", err)
	}
	r := &fleet.Remote{Incoming: cfg.Incoming(), Client: c, Out: os.Stdout, Timeout: *timeout}
	switch {
	case pos[0] == "session" && len(pos) == 2:
		err = r.Session(ctx, os.Stdin, pos[1], h, *wait)
	case pos[0] == "status" && len(pos) == 1:
		err = r.Status(ctx)
	case pos[0] == "maintenance" && len(pos) == 3 && (pos[1] == "on" || pos[1] == "off"):
		err = r.Maintenance(ctx, pos[2], pos[1] == "on", *message)
	default:
		return usageError(fs, "want session APP, status or maintenance on|off APP")
	}
	if err != nil {
		return fail("%v", err)
	}
	return exitOK
}
