package dbus

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
	godbus "github.com/godbus/dbus/v5"

	"github.com/keter-systemd/keter/internal/cgroup"
	"github.com/keter-systemd/keter/internal/testkit"
	"github.com/keter-systemd/keter/unitgen"
)

// TestRestartInPlace: Restart gives a transient unit a new process under
// the same name; with its start counter flushed by ResetFailed, a unit
// whose start limit is 2 (ever) restarts three times.
func TestRestartInPlace(t *testing.T) {
	c := newClient(t)
	name := "keter-restart-" + testkit.Token() + ".service"
	err := c.StartTransient(t.Context(), name, []sddbus.Property{
		sddbus.PropType("exec"),
		sddbus.PropExecStart([]string{"/bin/sleep", "600"}, false),
		sddbus.PropSlice(unitgen.Slice),
		{Name: "StartLimitBurst", Value: godbus.MakeVariant(uint32(2))},
		{Name: "StartLimitIntervalUSec", Value: godbus.MakeVariant(uint64(1<<64 - 1))},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Stop(t.Context(), name) })
	pids := map[uint32]bool{}
	for i := range 4 {
		pid, err := c.MainPID(t.Context(), name)
		if err != nil || pid == 0 || pids[pid] {
			t.Fatalf("after %d restarts: PID %d (%v), seen %v", i, pid, err, pids)
		}
		pids[pid] = true
		if i == 3 {
			break
		}
		if err := c.ResetFailed(t.Context(), name); err != nil {
			t.Fatal(err)
		}
		if err := c.Restart(t.Context(), name); err != nil {
			t.Fatalf("restart %d: %v", i+1, err)
		}
	}
}

// TestInterrupt: Interrupt sends the signal to every process of the unit,
// as a terminal's Ctrl-C: a shell that traps it and its child both get it.
func TestInterrupt(t *testing.T) {
	c := newClient(t)
	name := "keter-oneoff-" + testkit.Token() + ".service"
	devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer devnull.Close()
	outR, outW := pipe(t)
	sent := make(chan error, 1)
	st, err := c.RunOnce(t.Context(), unitgen.Unit{Name: name, Properties: oneOff([]string{"/bin/sh", "-c", `trap "echo trapped; exit 7" INT; sleep 600`}, devnull, outW, devnull)}, func() {
		go func() {
			// The shell has set its trap once sleep runs beside it.
			mnt, err := cgroup.Mount()
			if err != nil {
				sent <- err
				return
			}
			for {
				b, _ := exec.Command("systemctl", "show", name, "-p", "ControlGroup", "--value").Output()
				cg := strings.TrimSpace(string(b))
				out, _ := os.ReadFile(filepath.Join(mnt, cg, "cgroup.procs"))
				if cg != "" && len(strings.Fields(string(out))) >= 2 {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			sent <- c.Interrupt(t.Context(), name, syscall.SIGINT)
		}()
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	outW.Close()
	out, _ := io.ReadAll(outR)
	if st.ExecMainCode != unitgen.CodeExited || st.ExecMainStatus != 7 || string(out) != "trapped\n" {
		t.Errorf("status %+v, output %q: want exit 7 and trapped (sleep interrupted too)", st, out)
	}
}
