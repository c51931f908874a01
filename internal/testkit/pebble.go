package testkit

import (
	"testing"

	"github.com/keter-systemd/keter/internal/pebble"
)

// Pebble starts Pebble and challtestsrv for one test, built with go
// install the first time; a machine that cannot build them (no module
// proxy) is a missing part. Unset ports are taken with FreePort; Dir
// defaults to a temp folder. Pebble's log is shown when the test fails.
func Pebble(t testing.TB, o pebble.Options) *pebble.Server {
	t.Helper()
	if _, _, err := pebble.Build(t.Context()); err != nil {
		Missing(t, "building Pebble, the ACME test server: %v", err)
	}
	for _, p := range []*int{&o.ACMEPort, &o.MgmtPort, &o.DNSPort, &o.ChallPort, &o.TLSPort} {
		if *p == 0 {
			*p = FreePort(t)
		}
	}
	if o.Dir == "" {
		o.Dir = t.TempDir()
	}
	s, err := pebble.Start(t.Context(), o)
	if err != nil {
		t.Fatalf("starting Pebble: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("pebble log:\n%s", s.Log())
		}
		s.Stop()
	})
	return s
}
