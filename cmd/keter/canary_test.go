package main

import (
	"context"
	"strings"
	"testing"

	"github.com/keter-systemd/keter/app"
	"github.com/keter-systemd/keter/status"
)

// TestCanaryUsage: bad arguments are usage errors (exit 2) before keter
// is asked anything.
func TestCanaryUsage(t *testing.T) {
	for _, args := range [][]string{
		{"shop"},
		{"shop", "--percent", "101"},
		{"shop", "--percent", "-1"},
		{"shop", "--percent", "2.5"},
		{"shop", "--percent", "ten"},
		{"shop", "promote", "--percent", "10"},
		{"shop", "ship"},
		{},
	} {
		if code := cmdCanary(context.Background(), append([]string{"-c", "/nonexistent/keter-config.yaml"}, args...)); code != exitUsage {
			t.Errorf("keter canary %s: exit %d, want %d", strings.Join(args, " "), code, exitUsage)
		}
	}
}

func TestCanaryLines(t *testing.T) {
	live := &app.VersionStatus{Version: "v1"}
	pct := 20
	for _, c := range []struct {
		name string
		c    *app.CanaryStatus
		req  status.CanaryRequest
		want string
	}{
		{"armed", &app.CanaryStatus{Percent: 20}, status.CanaryRequest{Percent: &pct}, "shop: canary armed at 20%: the next bundle deployed starts beside version v1"},
		{"running", &app.CanaryStatus{Percent: 20, Version: &app.VersionStatus{Version: "v2"}}, status.CanaryRequest{Percent: &pct}, "shop: canary version v2 gets 20% of new clients, version v1 the rest"},
		{"promoted", nil, status.CanaryRequest{Action: status.CanaryPromote}, "shop: canary promoted: version v1 is live"},
		{"aborted", nil, status.CanaryRequest{Action: status.CanaryAbort}, "shop: canary aborted: version v1 serves every client"},
	} {
		a := status.App{AppStatus: app.AppStatus{Name: "shop", Live: live, Canary: c.c}}
		if got := canaryLine(a, c.req); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
	var b strings.Builder
	printApp(&b, status.App{AppStatus: app.AppStatus{Name: "shop", Live: live, Canary: &app.CanaryStatus{Percent: 20, Ready: false, Down: []string{"u.service"},
		Version: &app.VersionStatus{Version: "v2"}, Requests: app.CanaryRequests{Live: 80, Canary: 20}}}, State: "live"})
	for _, want := range []string{"canary:       version v2, 20% of new clients, not serving (u.service down)", "requests:     live 80, canary 20"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("status APP lacks %q:\n%s", want, b.String())
		}
	}
}
