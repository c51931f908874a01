package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/keter-systemd/keter/fleet"
)

// hostFlags are the --hosts options of deploy, rollback, status and
// maintenance: the same command on other machines, over ssh.
type hostFlags struct {
	list, file *string
	parallel   *int
	wait       *bool
}

func addHostFlags(fs *flag.FlagSet, rollout bool) *hostFlags {
	h := &hostFlags{
		list: fs.String("hosts", "", "run on these hosts over ssh instead: DEST[,DEST...] (ssh_config alias, [user@]host or ssh://[user@]host[:port])"),
		file: fs.String("hosts-file", "", "read hosts from FILE, one DEST a line (with or instead of --hosts)"),
	}
	if rollout {
		h.parallel = fs.Int("parallel", 1, "with --hosts: hosts at a time; the next batch starts once the whole batch is live")
		h.wait = fs.Bool("wait", false, "with --hosts: wait for another rollout of the app to end instead of refusing")
	}
	return h
}

func (h *hostFlags) given() bool { return *h.list != "" || *h.file != "" }

func (h *hostFlags) options() (fleet.Options, error) {
	hosts, err := fleet.Hosts(*h.list, *h.file)
	o := fleet.Options{Hosts: hosts, Out: os.Stdout}
	if h.parallel != nil {
		o.Parallel, o.Wait = *h.parallel, *h.wait
		if o.Parallel < 1 {
			return o, fmt.Errorf("--parallel must be 1 or more")
		}
	}
	return o, err
}

// rolloutHosts runs a fleet rollout and turns its error into an exit code.
func rolloutHosts(ctx context.Context, h *hostFlags, run func(context.Context, fleet.Options) error) int {
	o, err := h.options()
	if err != nil {
		return fail("%v", err)
	}
	if err := run(ctx, o); err != nil {
		return fail("%v", err)
	}
	return exitOK
}

func deployHosts(ctx context.Context, h *hostFlags, name, file string, timeout time.Duration) int {
	return rolloutHosts(ctx, h, func(ctx context.Context, o fleet.Options) error {
		o.Timeout = timeout
		_, err := fleet.Deploy(ctx, o, name, file)
		return err
	})
}

func rollbackHosts(ctx context.Context, h *hostFlags, name string, timeout time.Duration) int {
	return rolloutHosts(ctx, h, func(ctx context.Context, o fleet.Options) error {
		o.Timeout = timeout
		_, err := fleet.Rollback(ctx, o, name)
		return err
	})
}

func statusHosts(ctx context.Context, h *hostFlags, name string) int {
	o, err := h.options()
	if err != nil {
		return fail("%v", err)
	}
	if !fleet.PrintStatus(os.Stdout, fleet.Status(ctx, o), name) {
		return exitFailure
	}
	return exitOK
}

func maintenanceHosts(ctx context.Context, h *hostFlags, name string, on bool, message string) int {
	return rolloutHosts(ctx, h, func(ctx context.Context, o fleet.Options) error {
		return fleet.Maintenance(ctx, o, name, on, message)
	})
}
