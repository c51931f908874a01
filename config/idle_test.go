package config

import (
	"strings"
	"testing"
	"time"
)

func TestIdleStop(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		want       time.Duration
		err        string
	}{
		{"unset: never", "root: /r\n", 0, ""},
		{"duration", "root: /r\nidle-stop: 30m\n", 30 * time.Minute, ""},
		{"bare number", "root: /r\nidle-stop: 600\n", 0, "must be a duration with its unit"},
		{"garbage", "root: /r\nidle-stop: soon\n", 0, "must be a duration with its unit"},
		{"negative", "root: /r\nidle-stop: -1m\n", 0, "idle-stop: must not be negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, warns, err := Parse([]byte(tc.yaml), "/")
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := time.Duration(c.IdleStop); got != tc.want {
				t.Errorf("IdleStop = %s, want %s", got, tc.want)
			}
			if len(warns) > 0 {
				t.Errorf("warnings: %v", warns)
			}
		})
	}
}
