package dbus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"syscall"
	"time"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
	"github.com/coreos/go-systemd/v22/journal"
	godbus "github.com/godbus/dbus/v5"

	"github.com/keter-systemd/keter/unitgen"
)

// oneOffPoll is how often RunOnce reads a running one-off unit's state.
const oneOffPoll = 50 * time.Millisecond

// RunOnce starts a transient service that runs once (keter exec), calls
// started once it runs, and waits until it ends, returning how its main
// process ended (ActiveState, Result, ExecMainCode, ExecMainStatus).
//
// systemd forgets a transient unit as soon as it is collected, and with it
// the exit status; AddRef, which systemd-run --wait uses to hold a unit,
// needs the bus daemon (systemd refuses it on its private socket). So the
// unit gets RemainAfterExit=yes and CollectMode=inactive: after its main
// process ends it stays loaded ("active (exited)", or "failed"), RunOnce
// reads how it ended, then stops it or resets it, and systemd collects it.
// When ctx ends, the unit is stopped; its end is still returned (a unit
// stopped by SIGTERM is collected at once: ActiveState "inactive" and no
// exit status).
func (c *Client) RunOnce(ctx context.Context, u unitgen.Unit, started func()) (unitgen.Status, error) {
	name, props := u.Name, u.Properties
	props = slices.DeleteFunc(slices.Clone(props), func(p sddbus.Property) bool {
		return p.Name == "CollectMode" || p.Name == "RemainAfterExit"
	})
	props = append(props,
		sddbus.Property{Name: "CollectMode", Value: godbus.MakeVariant("inactive")},
		sddbus.Property{Name: "RemainAfterExit", Value: godbus.MakeVariant(true)})
	defer c.collectOneOff(name)
	if err := c.StartTransient(ctx, name, props); err != nil {
		// A process that ends before systemd saw its exec succeed fails
		// the start job, yet it ran: its end is its result.
		if st, serr := c.oneOffState(context.WithoutCancel(ctx), name); errors.Is(err, ErrJob) && serr == nil && ran(st) {
			if started != nil {
				started()
			}
			return st, nil
		}
		if ctx.Err() != nil {
			c.stopOneOff(name) // the job may start it all the same
		} else if lines, jerr := c.Journal(context.WithoutCancel(ctx), name, 10); jerr == nil && len(lines) > 0 {
			err = fmt.Errorf("%w; last journal lines:\n%s", err, strings.Join(lines, "\n"))
		}
		return unitgen.Status{}, err
	}
	if started != nil {
		started()
	}
	return c.waitOneOff(ctx, name)
}

// ran reports whether a unit whose start job failed ran its command all
// the same: its main process exited with a status of its own or was
// killed. Statuses 200 to 243 are systemd's own setup failures (200/CHDIR,
// 203/EXEC, 217/USER, ...).
func ran(st unitgen.Status) bool {
	switch st.ExecMainCode {
	case unitgen.CodeExited:
		return st.ExecMainStatus < 200 || st.ExecMainStatus > 243
	case unitgen.CodeKilled, unitgen.CodeDumped:
		return true
	}
	return false
}

// waitOneOff polls the unit until it is inactive or failed. Once ctx ends
// it stops the unit and keeps polling, for at most the job timeout.
func (c *Client) waitOneOff(ctx context.Context, name string) (unitgen.Status, error) {
	tick := time.NewTicker(oneOffPoll)
	defer tick.Stop()
	var deadline <-chan time.Time
	done := ctx.Done()
	rctx := context.WithoutCancel(ctx)
	for {
		select {
		case <-done:
			done = nil // once
			c.stopOneOff(name)
			t := time.NewTimer(c.jobTimeout())
			defer t.Stop()
			deadline = t.C
		case <-deadline:
			return unitgen.Status{}, fmt.Errorf("waiting for unit %s to stop: still running after %s", name, c.jobTimeout())
		case <-tick.C:
		}
		s, err := c.oneOffState(rctx, name)
		if err != nil {
			return unitgen.Status{}, err
		}
		if s.ActiveState == "inactive" || s.ActiveState == "failed" || s.SubState == "exited" {
			return s, nil
		}
	}
}

func (c *Client) oneOffState(ctx context.Context, name string) (unitgen.Status, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var unit, svc map[string]any
	err := c.do(ctx, func(conn *sddbus.Conn) error {
		var err error
		if unit, err = conn.GetUnitPropertiesContext(ctx, name); err != nil {
			return err
		}
		svc, err = conn.GetUnitTypePropertiesContext(ctx, name, "Service")
		return err
	})
	if err != nil {
		return unitgen.Status{}, fmt.Errorf("reading unit %s: %w", name, err)
	}
	s := unitgen.Status{Name: name}
	s.ActiveState, _ = unit["ActiveState"].(string)
	s.SubState, _ = unit["SubState"].(string)
	s.Result, _ = svc["Result"].(string)
	s.MainPID, _ = svc["MainPID"].(uint32)
	s.ExecMainCode, _ = svc["ExecMainCode"].(int32)
	s.ExecMainStatus, _ = svc["ExecMainStatus"].(int32)
	return s, nil
}

// collectOneOff lets systemd collect a one-off unit that RunOnce kept
// loaded: stopped when it ended well (active, exited), reset when it
// failed.
func (c *Client) collectOneOff(name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	state, err := c.ActiveState(ctx, name)
	switch {
	case err != nil:
		slog.Warn("reading one-off unit", "unit", name, "err", err)
	case state == "failed":
		err = c.ResetFailed(ctx, name)
	case state != "inactive":
		err = c.Stop(ctx, name)
	}
	if err != nil {
		slog.Warn("letting systemd collect one-off unit", "unit", name, "err", err)
	}
}

// stopOneOff asks systemd to stop the unit without waiting for the job:
// the caller reads the unit's end by polling.
func (c *Client) stopOneOff(name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := c.do(ctx, func(conn *sddbus.Conn) error {
		_, err := conn.StopUnitContext(ctx, name, "replace", nil)
		return err
	})
	if err != nil && !isDBusError(err, "org.freedesktop.systemd1.NoSuchUnit") {
		// The caller sees it when the unit does not end.
		slog.Warn("stopping one-off unit", "unit", name, "err", err)
	}
}

// Record writes one entry to the journal with fields of keter's choosing
// (the app's KETER_* fields), so `journalctl KETER_APP=APP` shows it
// among the app's lines: who ran which command, and how it ended.
func (c *Client) Record(msg string, fields map[string]string) error {
	if !journal.Enabled() {
		return errors.New("journald is not running")
	}
	return journal.Send(msg, journal.PriInfo, fields)
}

// Interrupt sends sig to every process of a unit (as a terminal sends
// Ctrl-C to its foreground process group), with no job.
func (c *Client) Interrupt(ctx context.Context, name string, sig syscall.Signal) error {
	err := c.do(ctx, func(conn *sddbus.Conn) error {
		return conn.KillUnitWithTarget(ctx, name, sddbus.All, int32(sig))
	})
	if err != nil {
		return fmt.Errorf("sending %s to unit %s: %w", sig, name, err)
	}
	return nil
}
