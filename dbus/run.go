package dbus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	sddbus "github.com/coreos/go-systemd/v22/dbus"

	"github.com/keter-systemd/keter/unitgen"
)

// Run starts u, a transient Type=oneshot unit, and waits until its process
// has ended: the start job of a oneshot ends with it. Only ctx bounds the
// wait (the unit's own TimeoutStartSec should end it first); when ctx ends
// first, Run stops the unit before it returns ctx's error. The Status says how it
// ended (Result, ExecMainCode, ExecMainStatus); a failed unit, kept loaded
// by CollectMode=inactive so it can be read, is reset afterwards so
// systemd collects it. A non-nil error means it could not be started or
// followed, not that it failed. The caller must have written u.Secrets to
// u.EnvFile first.
func (c *Client) Run(ctx context.Context, u unitgen.Unit) (unitgen.Status, error) {
	st := unitgen.Status{Name: u.Name, Meta: u.Meta}
	err := c.jobWithin(ctx, "run", u.Name, 0, func(conn *sddbus.Conn) (int, error) {
		return conn.StartTransientUnitContext(ctx, u.Name, "fail", u.Properties, nil)
	})
	switch {
	case err == nil:
		// A oneshot's start job is done only once its process exited 0.
		st.ActiveState, st.SubState, st.Result = "inactive", "dead", "success"
		st.ExecMainCode = unitgen.CodeExited
		return st, nil
	case !errors.Is(err, ErrJob):
		// Not followed to its end (ctx ended, the bus dropped): it must
		// not go on running unwatched.
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.jobTimeout())
		defer cancel()
		if serr := c.Stop(sctx, u.Name); serr != nil {
			err = errors.Join(err, serr)
		}
		return st, fmt.Errorf("running unit %s: %w", u.Name, err)
	}
	props, perr := c.serviceProps(ctx, u.Name)
	if perr != nil {
		// Gone already: the job result is all there is.
		slog.Debug("reading a finished unit", "unit", u.Name, "err", perr)
		st.ActiveState, st.Result = "failed", "unknown"
	} else {
		st.ActiveState, st.SubState = "failed", "failed"
		st.Result, _ = props["Result"].(string)
		st.ExecMainCode, _ = props["ExecMainCode"].(int32)
		st.ExecMainStatus, _ = props["ExecMainStatus"].(int32)
	}
	if st.Result == "" || st.Result == "success" {
		st.Result = "unknown" // an unloaded unit reads as new; the job did fail
	}
	if err := c.ResetFailed(ctx, u.Name); err != nil {
		slog.Warn("collecting a finished unit", "unit", u.Name, "err", err)
	}
	return st, nil
}
