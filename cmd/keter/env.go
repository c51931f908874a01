package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/keter-systemd/keter/app"
	"github.com/keter-systemd/keter/status"
)

const envAbout = `keter env APP                                  list APP's operator variables
keter env set APP KEY=VALUE... [--secret]      set them (the value may hold '=')
keter env set APP KEY [--secret] < FILE        one value from stdin, out of ps
keter env unset APP KEY...                     remove them

The operator's layer belongs to the app, not to a bundle: it outlives
redeploys, rollbacks and keter restarts, and comes above every other layer
(global env < postgres < forward-env < the bundle's env < this). PORT,
APPROOT and the bundle's port-env-vars are keter's. Values reach the app
through its root-only env file only. --secret values are listed as ***.
set and unset replace the live version (same bundle, no failed request)
and wait for it, unless --no-restart: then the next deploy or restart
applies them.`

func cmdEnv(ctx context.Context, args []string) int {
	fs := newFlags("env", "[-c CONFIG] [set|unset] APP [KEY=VALUE...|KEY...]", envAbout)
	cfgPath := configFlag(fs)
	secret := fs.Bool("secret", false, "set: never show these values (keter env lists them as ***)")
	noRestart := fs.Bool("no-restart", false, "set, unset: store only; the next deploy or restart applies them")
	timeout := fs.Duration("timeout", 15*time.Minute, "give up waiting for the replacement after this long (keter goes on)")
	pos, code, ok := parseArgs(fs, args, 1, 1<<20)
	if !ok {
		return code
	}
	verb := pos[0]
	if verb != "set" && verb != "unset" {
		if len(pos) != 1 {
			return usageError(fs, "want APP alone, or set|unset APP ...")
		}
		if *secret || *noRestart {
			return usageError(fs, "--secret and --no-restart go with set or unset")
		}
		verb = "list"
	} else if len(pos) < 3 {
		return usageError(fs, verb+" needs APP and at least one variable")
	}
	if verb == "unset" && *secret {
		return usageError(fs, "--secret goes with set")
	}
	var req status.EnvRequest
	if verb == "set" {
		var err error
		if req.Set, err = envVars(pos[2:], *secret, os.Stdin); err != nil {
			return usageError(fs, err.Error())
		}
	} else if verb == "unset" {
		req.Unset = pos[2:]
	}
	_, c, err := connect(*cfgPath)
	if err != nil {
		return fail("%v", err)
	}
	if verb == "list" {
		vars, err := c.Env(ctx, pos[0])
		if err != nil {
			return fail("%v", err)
		}
		for _, v := range vars {
			fmt.Println(envLine(v))
		}
		return exitOK
	}
	name := pos[1]
	req.NoRestart = *noRestart
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	if !*noRestart {
		fmt.Fprintf(os.Stderr, "keter: %s: stored; replacing the live version...\n", name)
	}
	r, err := c.ChangeEnv(ctx, name, req)
	if err == nil && r.Result == status.ResultStored && r.Error == "" {
		r.Error = "the next deploy or keter restart " + name + " applies it"
	}
	return replaced(name, r, err, *timeout)
}

// envLine is KEY=VALUE; a secret's value is ***, and one that would not
// stay on its line is quoted, Go-style.
func envLine(v app.EnvVar) string {
	switch {
	case v.Secret:
		return v.Name + "=***"
	case strings.ContainsFunc(v.Value, func(r rune) bool { return r < ' ' || r == 0x7f }):
		return v.Name + "=" + strconv.Quote(v.Value)
	}
	return v.Name + "=" + v.Value
}
