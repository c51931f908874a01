package bundle

import (
	"strings"
	"testing"
	"time"
)

func TestIdleKeys(t *testing.T) {
	const web = "stanzas:\n  - type: webapp\n    exec: ../a\n    host: a.test\n"
	for _, tc := range []struct {
		name, yaml string
		hostDef    time.Duration
		sleeps     time.Duration
		socket     bool
		err        string
	}{
		{"stanza", web + "    idle-stop: 10m\n    socket-activation: true\n", 0, 10 * time.Minute, true, ""},
		{"flat", "exec: ../a\nhost: a.test\nidle-stop: 2s\n", 0, 2 * time.Second, false, ""},
		{"host default", web, time.Hour, time.Hour, false, ""},
		{"own beats host", web + "    idle-stop: 5m\n", time.Hour, 5 * time.Minute, false, ""},
		{"off beats host", web + "    idle-stop: off\n", time.Hour, 0, false, ""},
		{"absent", web, 0, 0, false, ""},
		{"bare number", web + "    idle-stop: 600\n", 0, 0, false, "must be a duration with its unit"},
		{"zero", web + "    idle-stop: 0s\n", 0, 0, false, "must be more than 0s"},
		{"not a bool", web + "    socket-activation: yes please\n", 0, 0, false, "must be true or false"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, warns, err := ParseWithWarnings([]byte(tc.yaml))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			w := c.Stanzas[0].WebApp
			if got := w.Sleeps(tc.hostDef); got != tc.sleeps {
				t.Errorf("Sleeps(%s) = %s, want %s", tc.hostDef, got, tc.sleeps)
			}
			if w.SocketActivation != tc.socket {
				t.Errorf("SocketActivation = %t, want %t", w.SocketActivation, tc.socket)
			}
			for _, x := range warns {
				if strings.Contains(x, "idle-stop") || strings.Contains(x, "socket-activation") {
					t.Errorf("warning: %s", x)
				}
			}
		})
	}
}
