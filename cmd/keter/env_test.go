package main

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keter-systemd/keter/app"
	"github.com/keter-systemd/keter/unitgen"
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

// keter env set: KEY=VALUE, or one KEY alone read from stdin.
func TestEnvVars(t *testing.T) {
	for _, c := range []struct {
		name  string
		args  []string
		stdin string
		want  []app.EnvVar
		err   string
	}{
		{"pairs", []string{"A=1", "B=x=y"}, "", []app.EnvVar{{Name: "A", Value: "1", Secret: true}, {Name: "B", Value: "x=y", Secret: true}}, ""},
		{"from stdin, final newline dropped", []string{"TOKEN"}, "s3cr3t\n", []app.EnvVar{{Name: "TOKEN", Value: "s3cr3t", Secret: true}}, ""},
		{"from stdin, inner newlines kept", []string{"A=1", "CERT"}, "a\nb\n\n", []app.EnvVar{{Name: "A", Value: "1", Secret: true}, {Name: "CERT", Value: "a\nb\n", Secret: true}}, ""},
		{"two from stdin", []string{"A", "B"}, "x", nil, "only one KEY"},
		{"empty name", []string{"=v"}, "", nil, "want KEY=VALUE"},
		{"too long", []string{"BIG"}, strings.Repeat("x", unitgen.MaxOperatorValue+1), nil, "longer than"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := envVars(c.args, true, strings.NewReader(c.stdin))
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("err %v, want %q", err, c.err)
				}
				return
			}
			if err != nil || !slices.Equal(got, c.want) {
				t.Fatalf("envVars = %+v, %v; want %+v", got, err, c.want)
			}
		})
	}
}
