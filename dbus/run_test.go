package dbus

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/keter-systemd/keter/bundle"
	"github.com/keter-systemd/keter/unitgen"
)

// TestRunReleaseUnit runs release units against the real systemd: Run
// returns once the process ended, with how it ended, and systemd has
// collected the unit by then, failed or not.
func TestRunReleaseUnit(t *testing.T) {
	c := newClient(t)
	for _, tc := range []struct {
		name    string
		args    []string
		timeout time.Duration
		result  string
		code    int32
		status  int32
		line    string // in its journal
	}{
		{"exit 0", []string{"-exit", "0"}, time.Minute, "success", unitgen.CodeExited, 0, "exiting with 0 as asked"},
		{"exit 3", []string{"-exit", "3"}, time.Minute, "exit-code", unitgen.CodeExited, 3, "exiting with 3 as asked"},
		{"timeout", []string{"-never-ready"}, time.Second, "timeout", unitgen.CodeKilled, 15, "demoapp starting"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := newApp(t)
			u := releaseUnit(t, c, a, tc.timeout, tc.args...)
			began := time.Now()
			st, err := c.Run(t.Context(), u)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s ended after %s: %+v", u.Name, time.Since(began).Round(time.Millisecond), st)
			if st.Result != tc.result || st.ExecMainStatus != tc.status || (tc.result != "success" && st.ExecMainCode != tc.code) {
				t.Fatalf("status %+v, want result %s, code %d, status %d", st, tc.result, tc.code, tc.status)
			}
			if s := status(t, c, u.Name); s.ActiveState != "gone" {
				t.Fatalf("unit still loaded after Run: %+v", s)
			}
			var lines []string
			eventually(t, "the step's own line in its journal", func() (bool, string) {
				lines, _ = c.Journal(t.Context(), u.Name, 20)
				return strings.Contains(strings.Join(lines, "\n"), tc.line), strings.Join(lines, "\n")
			})
		})
	}
}

// TestRunCanceled: when the context ends first, Run stops the unit and
// systemd collects it.
func TestRunCanceled(t *testing.T) {
	c := newClient(t)
	a := newApp(t)
	u := releaseUnit(t, c, a, time.Minute, "-never-ready")
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	if _, err := c.Run(ctx, u); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Run = %v, want the context's end", err)
	}
	if s := status(t, c, u.Name); s.ActiveState != "gone" {
		t.Fatalf("after Run returned: %+v, want the unit stopped and collected", s)
	}
}

// releaseUnit builds the release step running demoapp with args, in the
// sandbox of a webapp stanza of a.
func releaseUnit(t *testing.T, c *Client, a app, timeout time.Duration, args ...string) unitgen.Unit {
	t.Helper()
	in := webInput(a, 0, nil)
	u, err := unitgen.Release(in, &bundle.Release{Exec: "bin/demoapp", Args: args, Timeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	if u.EnvFile != "" {
		if err := os.WriteFile(u.EnvFile, u.Secrets, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		ctx := context.Background()
		if err := c.Stop(ctx, u.Name); err != nil {
			t.Errorf("stopping %s: %v", u.Name, err)
		}
		_ = c.ResetFailed(ctx, u.Name)
	})
	return u
}
