package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/keter-systemd/keter/app"
	"github.com/keter-systemd/keter/status"
)

func cmdRestart(ctx context.Context, args []string) int {
	fs := newFlags("restart", "[-c CONFIG] [--timeout D] APP",
		"Replaces APP's live version with its own bundle, as a deploy would: new\nunits on new ports (every stanza, background ones too), every instance ready,\nthe switch, the old version drained: no request fails. The release step does\nnot run again. Prints the new version: exit 0; if it fails, the error and the\napp's last log lines: exit 1 (the old version keeps serving).")
	cfgPath := configFlag(fs)
	timeout := fs.Duration("timeout", 15*time.Minute, "give up waiting after this long (keter goes on)")
	pos, code, ok := parseArgs(fs, args, 1, 1)
	if !ok {
		return code
	}
	_, c, err := connect(*cfgPath)
	if err != nil {
		return fail("%v", err)
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	fmt.Fprintf(os.Stderr, "keter: restarting %s...\n", pos[0])
	r, err := c.Restart(ctx, pos[0])
	return replaced(pos[0], r, err, *timeout)
}

// replaced reports a replacement of the live version (keter restart,
// keter env set) as await reports a deploy.
func replaced(name string, r status.WaitResult, err error, timeout time.Duration) int {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return fail("%s: no new version after %s; keter goes on (see: keter status %s)", name, timeout, name)
	case err != nil:
		return fail("%s: %v", name, err)
	case r.Result == status.ResultStored:
		fmt.Printf("%s: stored; %s\n", name, strings.TrimPrefix(r.Error, "keter: "))
		return exitOK
	case r.Result == app.ResultLive && r.App != nil && r.App.Live != nil:
		v := r.App.Live
		fmt.Printf("%s: version %s is live (bundle %.12s) on %s\n", name, v.Version, v.Digest, strings.Join(v.Hosts, ", "))
		maintenanceNote(name, r.App)
		return exitOK
	case r.Result == app.ResultLive:
		fmt.Printf("%s: replaced\n", name)
		return exitOK
	}
	return failed(name, r)
}
