package unitgen

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keter-systemd/keter/bundle"
)

func TestSleepGolden(t *testing.T) {
	hook := []string{"/bin/sh", "/opt/keter/etc/hooks/port-unmap", "keter", "43000", "43124", "SOCKET"}
	for _, tc := range []struct {
		name   string
		socket bool
		inner  int
	}{
		{"sleeper-proxy", false, 43125},
		{"sleeper-socket-activation", true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := Input{App: "demo", Version: "1", Index: 0, Stanza: webStanza(func(w *bundle.WebApp) {
				w.IdleStop, w.SocketActivation, w.EnsureAliveTimeBound = 2*time.Second, tc.socket, 90_000_000
			}), Dir: "/opt/keter/temp/demo-1", Port: 43124, Global: global(), EnvDir: "/opt/keter/etc/env", StopHook: hook}
			s, err := Sleep(in, 2*time.Second, tc.inner)
			if err != nil {
				t.Fatal(err)
			}
			if propValue(s.App, "ExecStopPostEx") != nil {
				t.Error("the app's service has the port map's stop hook: an idle stop would take its front out")
			}
			var b strings.Builder
			b.WriteString("socket: " + s.Socket + "\n--- socket properties\n" + Render(s.SocketProperties))
			for _, u := range s.Units() {
				b.WriteString("--- unit " + u.Name + "\n" + Render(u.Properties))
			}
			golden := filepath.Join("testdata", tc.name+".golden")
			if *update {
				if err := os.WriteFile(golden, []byte(b.String()), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("reading golden file (run with -update to create): %v", err)
			}
			if got := b.String(); got != string(want) {
				t.Errorf("units differ from %s (run with -update if intended)\n--- got\n%s\n--- want\n%s", golden, got, want)
			}
		})
	}
}

func TestSleepRefuses(t *testing.T) {
	in := Input{App: "demo", Version: "1", Stanza: webStanza(nil), Dir: "/opt/keter/temp/demo-1", Port: 43124, Global: global(), EnvDir: "/e"}
	if _, err := Sleep(in, 0, 43125); err == nil {
		t.Error("idle-stop 0 accepted")
	}
	if _, err := Sleep(in, time.Second, 0); err == nil {
		t.Error("a proxy without an inner port accepted")
	}
}
