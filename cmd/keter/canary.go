package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/keter-systemd/keter/status"
)

func cmdCanary(ctx context.Context, args []string) int {
	fs := newFlags("canary", "[-c CONFIG] APP --percent N | APP promote | APP abort",
		"--percent N: APP's next bundle (dropped or keter deploy'ed) starts beside the\nlive version as its canary, and N % of new clients (0 to 100) go to it, each\nkept on its version by a cookie; with a canary running, changes the share.\npromote: the canary becomes the live version (the old one drains).\nabort: the canary's clients go back to the live version and it drains.\nNo step reloads nginx; each returns once nginx serves the change.")
	cfgPath := configFlag(fs)
	percent := fs.String("percent", "", "share of new clients for the canary, a whole number from 0 to 100")
	pos, code, ok := parseArgs(fs, args, 1, 2)
	if !ok {
		return code
	}
	var req status.CanaryRequest
	switch {
	case len(pos) == 1 && *percent == "":
		return usageError(fs, "want --percent N, promote or abort")
	case len(pos) == 1:
		n, err := strconv.Atoi(*percent)
		if err != nil || n < 0 || n > 100 {
			return usageError(fs, fmt.Sprintf("--percent %q: want a whole number from 0 to 100", *percent))
		}
		req.Percent = &n
	case *percent != "":
		return usageError(fs, "--percent goes without promote or abort")
	case pos[1] == status.CanaryPromote || pos[1] == status.CanaryAbort:
		req.Action = pos[1]
	default:
		return usageError(fs, fmt.Sprintf("want promote or abort, not %q", pos[1]))
	}
	_, c, err := connect(*cfgPath)
	if err != nil {
		return fail("%v", err)
	}
	a, err := c.Canary(ctx, pos[0], req)
	var ae *status.APIError
	if errors.As(err, &ae) && ae.Code == http.StatusNotFound {
		return fail("no app %q", pos[0])
	}
	if err != nil {
		return fail("%v", err)
	}
	fmt.Println(canaryLine(a, req))
	return exitOK
}

// canaryLine says what the app serves now.
func canaryLine(a status.App, req status.CanaryRequest) string {
	live := "no version"
	if a.Live != nil {
		live = "version " + a.Live.Version
	}
	switch {
	case req.Action == status.CanaryPromote:
		return fmt.Sprintf("%s: canary promoted: %s is live", a.Name, live)
	case req.Action == status.CanaryAbort:
		return fmt.Sprintf("%s: canary aborted: %s serves every client", a.Name, live)
	case a.Canary == nil:
		return fmt.Sprintf("%s: no canary", a.Name)
	case a.Canary.Version == nil:
		return fmt.Sprintf("%s: canary armed at %d%%: the next bundle deployed starts beside %s", a.Name, a.Canary.Percent, live)
	}
	return fmt.Sprintf("%s: canary version %s gets %d%% of new clients, %s the rest", a.Name, a.Canary.Version.Version, a.Canary.Percent, live)
}
