package app

import (
	"context"

	"github.com/keter-systemd/keter/bundle"
	"github.com/keter-systemd/keter/unitgen"
)

// Units runs app code as systemd units; the dbus package implements it.
type Units interface {
	Start(ctx context.Context, u unitgen.Unit) error
	// StartSleeper starts a sleeping instance's socket, its app and
	// proxy units loaded with it to start at its first connection.
	StartSleeper(ctx context.Context, s unitgen.Sleeper) error
	Stop(ctx context.Context, name string) error
	// Run starts a oneshot unit (a release step) and waits until its
	// process ends, returning how it ended; when ctx ends first it stops
	// the unit and returns ctx's error.
	Run(ctx context.Context, u unitgen.Unit) (unitgen.Status, error)
	List(ctx context.Context, prefix string) ([]unitgen.Status, error)
	Journal(ctx context.Context, unit string, n int) ([]string, error)
	// Listens fails unless a socket listening on port belongs to unit:
	// another program may have taken an app's port before the app bound it.
	Listens(ctx context.Context, unit string, port int) error
	// Subscribe sends each matching unit's state, first as it is, then
	// at every change; ActiveState "gone" once systemd unloaded it.
	Subscribe(ctx context.Context, prefix string) (<-chan unitgen.Status, error)
}

// Proxy points the front door at the live versions; the nginx package
// implements it. Apply gets the whole desired state every time.
type Proxy interface {
	Apply(ctx context.Context, live []Live) error
}

// Databases provisions plugin databases; the postgres package implements it.
type Databases interface {
	Ensure(ctx context.Context, app string, want *bundle.Postgres) (map[string]string, error)
}

// Live is one app's serving version as the proxy needs it.
type Live struct {
	Name    string
	Version string
	Dir     string
	Config  *bundle.AppConfig
	// Ports are each webapp stanza's instances' own ports (stanza index →
	// one per instance).
	Ports map[int][]int
	// Fronts are the app's stable front ports, one per instance in the
	// same order: a proxy that can point them at Ports switches versions
	// without a reload.
	Fronts map[int][]int
	// Down are instance ports whose unit stopped for good: their front
	// must send nothing anywhere.
	Down map[int]bool
	// Resting are instance ports taken out of rotation for a moment (an
	// in-place restart): a proxy with a map sends their fronts to the
	// other instances.
	Resting map[int]bool
	// Maintenance, when set, sends every host of the app to the proxy's
	// maintenance page instead.
	Maintenance *Maintenance
	// CanaryFronts are each webapp stanza's canary fronts; Canary is the
	// app's canary version, nil for none (canary.go).
	CanaryFronts map[int][]int
	Canary       *CanaryLive
}
