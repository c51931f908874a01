package dbus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	sddbus "github.com/coreos/go-systemd/v22/dbus"

	"github.com/keter-systemd/keter/unitgen"
)

// ErrRunning classes a job whose service is running already: systemd
// never runs a service twice at once, so keter says so instead.
var ErrRunning = errors.New("job is running")

// StartJob starts a job's timer with its service as an auxiliary unit in
// one StartTransientUnit call (a transient timer cannot name a service
// that does not exist yet). The service does not start now: the timer
// starts it at the schedule's next time. The caller must have written
// j.Service.Secrets to j.Service.EnvFile first.
func (c *Client) StartJob(ctx context.Context, j unitgen.Job) error {
	aux := []sddbus.PropertyCollection{{Name: j.Service.Name, Properties: j.Service.Properties}}
	start := func(conn *sddbus.Conn) (int, error) {
		return conn.StartTransientUnitAux(ctx, j.Timer, "fail", j.TimerProperties, aux, nil)
	}
	err := c.job(ctx, "start", j.Timer, start)
	if err != nil && isDBusError(err, "org.freedesktop.systemd1.UnitExists") {
		// Left over from an earlier start (a failed run keeps the service
		// loaded): clear both names and try once more.
		_ = c.ResetFailed(ctx, j.Timer)
		_ = c.ResetFailed(ctx, j.Service.Name)
		err = c.job(ctx, "start", j.Timer, start)
	}
	if err != nil {
		return fmt.Errorf("starting job timer %s: %w", j.Timer, err)
	}
	for _, n := range []string{j.Timer, j.Service.Name} {
		if _, err := repairFile(filepath.Join(c.transientDir(), n)); err != nil {
			slog.Warn("repairing transient unit file", "unit", n, "err", err)
		}
	}
	return nil
}

// RunJob starts a job's service now, as its timer would, and waits until
// its process runs; ErrRunning when a run is under way.
func (c *Client) RunJob(ctx context.Context, service string) error {
	state, err := c.ActiveState(ctx, service)
	if err != nil {
		return err
	}
	switch state {
	case "active", "activating", "deactivating", "reloading":
		return fmt.Errorf("%s is %s: %w", service, state, ErrRunning)
	}
	err = c.job(ctx, "start", service, func(conn *sddbus.Conn) (int, error) {
		return conn.StartUnitContext(ctx, service, "fail", nil)
	})
	if err != nil {
		return fmt.Errorf("starting job %s: %w", service, err)
	}
	return nil
}

// JobState reads a job's timer and service.
func (c *Client) JobState(ctx context.Context, timer, service string) (unitgen.JobState, error) {
	var st unitgen.JobState
	var tp, sp map[string]any
	err := c.do(ctx, func(conn *sddbus.Conn) error {
		var err error
		if tp, err = conn.GetUnitTypePropertiesContext(ctx, timer, "Timer"); err != nil {
			return err
		}
		if sp, err = conn.GetAllPropertiesContext(ctx, service); err != nil {
			return err
		}
		return nil
	})
	if err != nil {
		return st, fmt.Errorf("reading job %s: %w", timer, err)
	}
	st.Next = usecTime(tp["NextElapseUSecRealtime"])
	st.LastTrigger = usecTime(tp["LastTriggerUSec"])
	st.Active, _ = sp["ActiveState"].(string)
	st.Result, _ = sp["Result"].(string)
	st.Started = usecTime(sp["ExecMainStartTimestamp"])
	st.Exited = usecTime(sp["ExecMainExitTimestamp"])
	st.ExecMainCode, _ = sp["ExecMainCode"].(int32)
	st.ExecMainStatus, _ = sp["ExecMainStatus"].(int32)
	return st, nil
}

// usecTime reads a systemd timestamp (µs since the epoch; 0 and the
// infinity value mean none).
func usecTime(v any) time.Time {
	u, ok := v.(uint64)
	if !ok || u == 0 || u == ^uint64(0) {
		return time.Time{}
	}
	return time.UnixMicro(int64(u))
}
