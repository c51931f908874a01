package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/keter-systemd/keter/app"
	"github.com/keter-systemd/keter/nginx"
	"github.com/keter-systemd/keter/status"
)

// printCanary is keter status APP's lines for an app with a canary.
func printCanary(w io.Writer, c *app.CanaryStatus) {
	if c == nil {
		return
	}
	if c.Version == nil {
		fmt.Fprintf(w, "canary:       armed at %d%% since %s: waiting for a bundle\n", c.Percent, c.Since.Local().Format(time.DateTime))
		return
	}
	v := c.Version
	state := "serving"
	if !c.Ready {
		state = "not serving (" + strings.Join(c.Down, ", ") + " down): its clients get the live version"
	}
	fmt.Fprintf(w, "canary:       version %s, %d%% of new clients, %s\ncanary ports: %s\nrequests:     live %d, canary %d (since the canary started)\n",
		v.Version, c.Percent, state, portList(v.Ports, v.Fronts), c.Requests.Live, c.Requests.Canary)
}

// canaryDeployed reports a deploy that started a canary; false when r is
// not one.
func canaryDeployed(name, digest string, a *status.App) bool {
	if a == nil || a.Canary == nil || a.Canary.Version == nil || a.Canary.Version.Digest != digest {
		return false
	}
	fmt.Printf("%s: version %s runs as the canary (bundle %s), %d%% of new clients; then: keter canary %s promote|abort\n",
		name, a.Canary.Version.Version, digest[:12], a.Canary.Percent, name)
	return true
}

// nginxCanary is the proxy's view of an app's canary.
func nginxCanary(c *app.CanaryLive) *nginx.Canary {
	if c == nil {
		return nil
	}
	return &nginx.Canary{Ports: c.Ports, Percent: c.Percent, Ready: c.Ready}
}

// countCanaryRequests has nginx's canary request lines counted by the
// app manager until ctx ends.
func countCanaryRequests(ctx context.Context, ngx *nginx.Manager, mgr *app.Manager, log *slog.Logger, wg *sync.WaitGroup) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := ngx.CountCanaryRequests(ctx, mgr.CountRequest); err != nil {
			log.Warn("not counting requests per version during canaries", "err", err)
		}
	}()
}
