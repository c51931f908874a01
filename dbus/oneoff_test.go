package dbus

import (
	"context"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
	godbus "github.com/godbus/dbus/v5"

	"github.com/keter-systemd/keter/internal/testkit"
	"github.com/keter-systemd/keter/unitgen"
)

// oneOff is a minimal one-off unit whose standard streams are the given
// files: what keter exec hands over.
func oneOff(argv []string, stdin, stdout, stderr *os.File) []sddbus.Property {
	return []sddbus.Property{
		sddbus.PropType("exec"),
		sddbus.PropExecStart(argv, false),
		sddbus.PropSlice(unitgen.Slice),
		{Name: "CollectMode", Value: godbus.MakeVariant("inactive-or-failed")},
		{Name: "StandardInputFileDescriptor", Value: godbus.MakeVariant(godbus.UnixFD(stdin.Fd()))},
		{Name: "StandardOutputFileDescriptor", Value: godbus.MakeVariant(godbus.UnixFD(stdout.Fd()))},
		{Name: "StandardErrorFileDescriptor", Value: godbus.MakeVariant(godbus.UnixFD(stderr.Fd()))},
	}
}

func pipe(t *testing.T) (*os.File, *os.File) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(); w.Close() })
	return r, w
}

// TestRunOnceStreamsAndExitStatus: the unit reads the stdin it was given,
// writes to the stdout and stderr it was given, its exit status comes
// back, and systemd collects the unit once it has been read.
func TestRunOnceStreamsAndExitStatus(t *testing.T) {
	c := newClient(t)
	name := "keter-oneoff-" + testkit.Token() + ".service"
	inR, inW := pipe(t)
	outR, outW := pipe(t)
	errR, errW := pipe(t)
	inW.WriteString("hello\n")
	inW.Close()
	started := false
	st, err := c.RunOnce(t.Context(), unitgen.Unit{Name: name, Properties: oneOff([]string{"/bin/sh", "-c", "read x; echo got $x; echo oops >&2; exit 7"}, inR, outW, errW)}, func() { started = true })
	if err != nil {
		t.Fatal(err)
	}
	outW.Close()
	errW.Close()
	out, _ := io.ReadAll(outR)
	errOut, _ := io.ReadAll(errR)
	if !started || st.ExecMainCode != unitgen.CodeExited || st.ExecMainStatus != 7 || st.Result != "exit-code" {
		t.Errorf("started %v, status %+v: want exited 7 (exit-code)", started, st)
	}
	if string(out) != "got hello\n" || string(errOut) != "oops\n" {
		t.Errorf("stdout %q, stderr %q", out, errOut)
	}
	eventually(t, "the unit collected", func() (bool, string) {
		s, err := c.ActiveState(t.Context(), name)
		return err == nil && s == "inactive", s
	})
	if units, _ := c.List(t.Context(), name); len(units) != 0 {
		t.Errorf("unit still loaded after its end was read: %+v", units)
	}
}

// TestRunOnceStopsOnCancel: ending the context stops the unit at once,
// and RunOnce returns once it is down.
func TestRunOnceStopsOnCancel(t *testing.T) {
	c := newClient(t)
	name := "keter-oneoff-" + testkit.Token() + ".service"
	devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer devnull.Close()
	ctx, cancel := context.WithCancel(t.Context())
	began := time.Now()
	st, err := c.RunOnce(ctx, unitgen.Unit{Name: name, Properties: oneOff([]string{"/bin/sleep", "60"}, devnull, devnull, devnull)}, cancel)
	if err != nil {
		t.Fatal(err)
	}
	if st.ActiveState != "inactive" || time.Since(began) > 20*time.Second {
		t.Errorf("status %+v after %s: want stopped at once", st, time.Since(began))
	}
	if s, err := c.ActiveState(t.Context(), name); err != nil || s != "inactive" {
		t.Errorf("unit %s after RunOnce: %s %v", name, s, err)
	}
}

// TestRunOnceFailedStart: a command that cannot run is an error that
// names the unit.
func TestRunOnceFailedStart(t *testing.T) {
	c := newClient(t)
	name := "keter-oneoff-" + testkit.Token() + ".service"
	devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer devnull.Close()
	_, err = c.RunOnce(t.Context(), unitgen.Unit{Name: name, Properties: oneOff([]string{"/nonexistent/bin"}, devnull, devnull, devnull)}, nil)
	if err == nil || !strings.Contains(err.Error(), name) {
		t.Fatalf("err %v: want a failed start naming %s", err, name)
	}
	if units, _ := c.List(t.Context(), name); len(units) != 0 {
		t.Errorf("failed unit left loaded: %+v", units)
	}
}

// TestRunOnceSuccess: exit 0 reads back as exited 0, not as a unit systemd
// already forgot.
func TestRunOnceSuccess(t *testing.T) {
	c := newClient(t)
	name := "keter-oneoff-" + testkit.Token() + ".service"
	devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer devnull.Close()
	st, err := c.RunOnce(t.Context(), unitgen.Unit{Name: name, Properties: oneOff([]string{"/bin/true"}, devnull, devnull, devnull)}, nil)
	if err != nil || st.ExecMainCode != unitgen.CodeExited || st.ExecMainStatus != 0 || st.Result != "success" {
		t.Fatalf("status %+v, %v: want exited 0", st, err)
	}
	if units, _ := c.List(t.Context(), name); len(units) != 0 {
		t.Errorf("unit left loaded: %+v", units)
	}
}
