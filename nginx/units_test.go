package nginx

import (
	"context"
	"fmt"
	"syscall"
	"testing"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
)

// sdUnits is the test-only Units: go-systemd straight to the sandbox
// systemd (keter's dbus package is the production adapter).
type sdUnits struct{ conn *sddbus.Conn }

func newSDUnits(t testing.TB) *sdUnits {
	t.Helper()
	conn, err := sddbus.NewWithContext(context.Background())
	if err != nil {
		t.Fatalf("connecting to systemd: %v", err)
	}
	t.Cleanup(conn.Close)
	return &sdUnits{conn: conn}
}

func wait(ctx context.Context, what string, ch <-chan string) error {
	select {
	case r := <-ch:
		if r != "done" {
			return fmt.Errorf("%s: job %s", what, r)
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (u *sdUnits) StartTransient(ctx context.Context, name string, props []sddbus.Property) error {
	ch := make(chan string, 1)
	if _, err := u.conn.StartTransientUnitContext(ctx, name, "fail", props, ch); err != nil {
		return err
	}
	return wait(ctx, "starting "+name, ch)
}

func (u *sdUnits) Signal(ctx context.Context, name string, sig syscall.Signal) error {
	return u.conn.KillUnitWithTarget(ctx, name, sddbus.Main, int32(sig))
}

func (u *sdUnits) Reload(ctx context.Context, name string) error {
	ch := make(chan string, 1)
	if _, err := u.conn.ReloadUnitContext(ctx, name, "replace", ch); err != nil {
		return err
	}
	return wait(ctx, "reloading "+name, ch)
}

func (u *sdUnits) ActiveState(ctx context.Context, name string) (string, error) {
	p, err := u.conn.GetUnitPropertyContext(ctx, name, "ActiveState")
	if err != nil {
		return "", err
	}
	s, _ := p.Value.Value().(string)
	return s, nil
}

func (u *sdUnits) Stop(ctx context.Context, name string) error {
	ch := make(chan string, 1)
	if _, err := u.conn.StopUnitContext(ctx, name, "replace", ch); err != nil {
		return err
	}
	return wait(ctx, "stopping "+name, ch)
}

func (u *sdUnits) MainPID(ctx context.Context, name string) (uint32, error) {
	return u.mainPID(ctx, name), nil
}

func (u *sdUnits) mainPID(ctx context.Context, name string) uint32 {
	p, err := u.conn.GetServicePropertyContext(ctx, name, "MainPID")
	if err != nil {
		return 0
	}
	v, _ := p.Value.Value().(uint32)
	return v
}
