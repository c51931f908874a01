package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/keter-systemd/keter/app"
	"github.com/keter-systemd/keter/bundle"
	"github.com/keter-systemd/keter/status"
)

func cmdDeploy(ctx context.Context, args []string) int {
	fs := newFlags("deploy", "[-c CONFIG] [--timeout D] [--no-wait] [--hosts DEST,... [--parallel N] [--wait]] FILE.keter",
		"Checks the bundle, copies it atomically into keter's incoming folder as\nNAME.keter and waits until that exact bundle (by sha256) is live: exit 0.\nIf keter refuses it, prints the error and the app's last log lines: exit 1.\nWith --hosts: the same on each host over ssh, N hosts at a time, stopping\nat the first failed host (see docs/hosts.md).")
	cfgPath := configFlag(fs)
	timeout := fs.Duration("timeout", 15*time.Minute, "give up waiting after this long (keter keeps trying)")
	noWait := fs.Bool("no-wait", false, "copy the bundle and return without waiting (keter need not run)")
	hosts := addHostFlags(fs, true)
	pos, code, ok := parseArgs(fs, args, 1, 1)
	if !ok {
		return code
	}
	file := pos[0]
	name, err := bundle.AppName(file)
	if err != nil {
		return fail("%v", err)
	}
	if hosts.given() {
		if *noWait {
			return usageError(fs, "--no-wait does not go with --hosts (a rollout waits for each batch)")
		}
		return deployHosts(ctx, hosts, name, file, *timeout)
	}
	_, warns, err := bundle.CheckWithWarnings(ctx, file)
	for _, w := range warns {
		fmt.Fprintf(os.Stderr, "keter: warning: %s: %s\n", file, w)
	}
	if err != nil {
		return fail("%s is not a valid bundle:\n%s", file, indent(err.Error()))
	}
	cfg, c, err := connect(*cfgPath)
	if err != nil {
		return fail("%v", err)
	}
	if !*noWait {
		if _, err := c.Keter(ctx); err != nil {
			return fail("%v; use --no-wait to only copy the bundle", err)
		}
	}
	since := time.Now()
	digest, err := app.CopyAtomic(file, filepath.Join(cfg.Incoming(), name+".keter"), 0o644)
	if err != nil {
		return fail("%v", err)
	}
	if *noWait {
		fmt.Printf("%s: bundle %s placed in %s\n", name, digest[:12], cfg.Incoming())
		return exitOK
	}
	fmt.Fprintf(os.Stderr, "keter: deploying %s (bundle %s)...\n", name, digest[:12])
	return await(ctx, c, name, digest, since, *timeout)
}

// await waits for a placed bundle's outcome and reports it.
func await(ctx context.Context, c *status.Client, name, digest string, since time.Time, timeout time.Duration) int {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	r, err := c.Wait(ctx, name, digest, since)
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return fail("%s: bundle %s is not live after %s; keter keeps trying (see: keter status %s)", name, digest[:12], timeout, name)
	case err != nil:
		return fail("%s: waiting for the deploy: %v", name, err)
	case r.Result == app.ResultLive && canaryDeployed(name, digest, r.App):
		return exitOK
	case r.Result == app.ResultLive && r.App != nil && r.App.Live != nil:
		v := r.App.Live
		fmt.Printf("%s: version %s is live (bundle %s) on %s\n", name, v.Version, digest[:12], strings.Join(v.Hosts, ", "))
		maintenanceNote(name, r.App)
		return exitOK
	case r.Result == app.ResultLive:
		fmt.Printf("%s: bundle %s is live\n", name, digest[:12])
		return exitOK
	}
	return failed(name, r)
}

// failed reports a deploy or replacement that did not go live: keter's
// error, the sandbox hint, the app's last lines and what keeps serving.
func failed(name string, r status.WaitResult) int {
	fmt.Fprintf(os.Stderr, "keter: %s: %s\n", name, r.Error)
	if r.App != nil {
		if r.App.LastHint != "" {
			fmt.Fprintf(os.Stderr, "keter: %s: %s\n", name, r.App.LastHint)
		}
		if len(r.App.LastLog) > 0 {
			fmt.Fprintf(os.Stderr, "last log lines of %s:\n%s\n", name, indent(strings.Join(r.App.LastLog, "\n")))
		}
		if r.App.Live != nil {
			fmt.Fprintf(os.Stderr, "version %s keeps serving.\n", r.App.Live.Version)
		}
	}
	return exitFailure
}

func indent(s string) string {
	return "  " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n  ")
}

func cmdRollback(ctx context.Context, args []string) int {
	fs := newFlags("rollback", "[-c CONFIG] [--timeout D] [--hosts DEST,... [--parallel N] [--wait]] APP",
		"Puts the newest kept bundle of APP other than the live one back into the\nincoming folder and waits until it is live. keter keeps the last\nkeep-bundles (default 3) bundles that went live, in ROOT/etc/bundles/APP.\nWith --hosts: each host back to the version the last deploy --hosts\nreplaced there; hosts that rollout did not reach are left alone.")
	cfgPath := configFlag(fs)
	timeout := fs.Duration("timeout", 15*time.Minute, "give up waiting after this long")
	hosts := addHostFlags(fs, true)
	pos, code, ok := parseArgs(fs, args, 1, 1)
	if !ok {
		return code
	}
	if hosts.given() {
		return rollbackHosts(ctx, hosts, pos[0], *timeout)
	}
	_, c, err := connect(*cfgPath)
	if err != nil {
		return fail("%v", err)
	}
	since := time.Now()
	digest, err := c.Rollback(ctx, pos[0])
	if err != nil {
		return fail("%v", err)
	}
	fmt.Fprintf(os.Stderr, "keter: rolling %s back to bundle %s...\n", pos[0], digest[:12])
	return await(ctx, c, pos[0], digest, since, *timeout)
}
