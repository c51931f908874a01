package main

import (
	"testing"
	"time"

	"github.com/keter-systemd/keter/app"
)

func TestEnvLine(t *testing.T) {
	for _, c := range []struct {
		v    app.EnvVar
		want string
	}{
		{app.EnvVar{Name: "A", Value: "x=y"}, "A=x=y"},
		{app.EnvVar{Name: "TOKEN", Secret: true}, "TOKEN=***"},
		{app.EnvVar{Name: "CERT", Value: "a\nb"}, `CERT="a\nb"`},
		{app.EnvVar{Name: "E"}, "E="},
	} {
		if got := envLine(c.v); got != c.want {
			t.Errorf("envLine(%+v) = %q, want %q", c.v, got, c.want)
		}
	}
}

func TestSinceArg(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	for in, want := range map[string]string{
		"10m":              "@1799999400",
		"1h30m":            "@1799994600",
		"-10m":             "@1799999400",
		"yesterday":        "yesterday",
		"2026-12-01 10:00": "2026-12-01 10:00",
	} {
		if got, err := sinceArg(in, now); err != nil || got != want {
			t.Errorf("sinceArg(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := sinceArg(" ", now); err == nil {
		t.Error("sinceArg of blank: no error")
	}
}
