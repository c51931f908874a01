package dbus

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
	godbus "github.com/godbus/dbus/v5"
	"github.com/keter-systemd/keter/config"
	"github.com/keter-systemd/keter/internal/testkit"
	"github.com/keter-systemd/keter/unitgen"
)

// TestRepairTransient: the Ex keys systemd 252 writes become the keys its
// parser reads, values (prefixes included) untouched; other lines stay.
func TestRepairTransient(t *testing.T) {
	in := "[Service]\nExecStopPostEx=\nExecStopPostEx=-+\"/bin/sh\" \"/h/port-unmap\" \"kt\"\nExecStartPreEx=+\"/bin/sh\" \"x\"\n" +
		"ExecStart=\"/bin/app\"\nEnvironment=\"ExecStartEx=not-a-key\"\nExecStartEx=:\"/bin/app\"\n"
	want := "[Service]\nExecStopPost=\nExecStopPost=-+\"/bin/sh\" \"/h/port-unmap\" \"kt\"\nExecStartPre=+\"/bin/sh\" \"x\"\n" +
		"ExecStart=\"/bin/app\"\nEnvironment=\"ExecStartEx=not-a-key\"\nExecStart=:\"/bin/app\"\n"
	got, changed := repairTransient([]byte(in))
	if !changed || string(got) != want {
		t.Fatalf("got changed=%v\n%s\nwant\n%s", changed, got, want)
	}
	if again, changed := repairTransient(got); changed || !bytes.Equal(again, got) {
		t.Fatalf("a repaired file changed again:\n%s", again)
	}
}

// TestUnitSurvivesDaemonReload: a package upgrade runs systemctl
// daemon-reload, which makes systemd re-read every transient unit from
// the file it wrote. Afterwards the app must still restart after a crash,
// with its arguments as they were, its folder handed to its user again
// (the privileged ExecStartPre) and its stop hook run (ExecStopPost).
func TestUnitSurvivesDaemonReload(t *testing.T) {
	c := newClient(t)
	a := newApp(t)
	port := testkit.FreePort(t)
	const message = `a $HOME; %n "q" 'x' \ b`
	marker := filepath.Join(testkit.Root(t), "stopped") // outside the root, which units see as an empty tmpfs
	hook := filepath.Join((&config.Config{Root: a.root}).Hooks(), "test-stop")
	if err := os.WriteFile(hook, []byte(`echo "$SERVICE_RESULT uid=$(id -u)" >>"$1"`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	in := webInput(a, port, nil, "-message", message)
	in.StopHook = []string{"/bin/sh", hook, marker}
	name, err := unitgen.UnitName(a.name, "1", "web0")
	if err != nil {
		t.Fatal(err)
	}
	// What keter's core sees: a reload must not look like the unit went.
	events, err := c.Subscribe(t.Context(), name)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var seen []string
	go func() {
		for s := range events {
			mu.Lock()
			seen = append(seen, s.ActiveState)
			mu.Unlock()
		}
	}()
	seenGone := func() (bool, string) {
		mu.Lock()
		defer mu.Unlock()
		return slices.Contains(seen, "gone"), strings.Join(seen, " ")
	}
	u, err := start(t, c, in)
	if err != nil {
		t.Fatal(err)
	}
	if body := waitHTTP(t, port, "/"); body != message+"\n" {
		t.Fatalf("before the reload the app says %q, want %q", body, message)
	}
	file, err := os.ReadFile(filepath.Join(TransientDir, u.Name))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(file, []byte("Ex=")) {
		t.Fatalf("the unit file still holds keys systemd cannot read back:\n%s", file)
	}

	run(t, "systemctl", "daemon-reload")
	show := run(t, "systemctl", "show", "-p", "LoadState,ExecStartPre,ExecStopPost", u.Name)
	for _, want := range []string{"LoadState=loaded", "own-folder", hook} {
		if !strings.Contains(show, want) {
			t.Fatalf("after daemon-reload the unit lacks %q:\n%s", want, show)
		}
	}
	// Hand the folder back to root: only the own-folder hook fixes that.
	if err := filepath.Walk(a.dir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, 0, 0)
	}); err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(waitHTTP(t, port, "/pid"))
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a new process serving after the reload", func() (bool, string) {
		body, err := get(port, "/pid")
		return err == nil && body != strconv.Itoa(pid), fmt.Sprint(body, err)
	})
	if body, err := get(port, "/"); err != nil || body != message+"\n" {
		t.Errorf("after the reload the app says %q (%v), want %q", body, err, message)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(a.dir, &st); err != nil {
		t.Fatal(err)
	}
	if st.Uid == 0 {
		t.Errorf("the version folder is still root's after a restart: the own-folder hook did not run")
	}
	eventually(t, "the stop hook to run for the crash", func() (bool, string) {
		b, _ := os.ReadFile(marker)
		return strings.HasPrefix(string(b), "signal uid=0\n"), string(b)
	})
	if gone, states := seenGone(); gone {
		t.Fatalf("the subscription reported the unit gone across a daemon-reload: %s", states)
	}
	if err := c.Stop(t.Context(), u.Name); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the subscription to report the stopped unit gone", seenGone)
}

// execEx is the D-Bus shape (sasas) of the Ex command properties.
type execEx struct {
	Path  string
	Args  []string
	Flags []string
}

// TestRepairTransientBringsBackLostCommands: a unit started before this
// fix (its file holding Ex keys) and broken by a daemon-reload gets its
// commands back from RepairTransient.
func TestRepairTransientBringsBackLostCommands(t *testing.T) {
	c := newClient(t)
	name := "keter-test-repair-" + testkit.Token() + ".service"
	props := []sddbus.Property{
		{Name: "ExecStartEx", Value: godbus.MakeVariant([]execEx{{"/bin/sleep", []string{"/bin/sleep", "600"}, []string{"no-env-expand"}}})},
		{Name: "ExecStopPostEx", Value: godbus.MakeVariant([]execEx{{"/bin/true", []string{"/bin/true", "keter-test-hook"}, []string{"privileged", "ignore-failure"}}})},
	}
	err := c.job(t.Context(), "start", name, func(conn *sddbus.Conn) (int, error) {
		return conn.StartTransientUnitContext(t.Context(), name, "fail", props, nil)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Stop(context.Background(), name) })
	file, err := os.ReadFile(filepath.Join(TransientDir, name))
	if err != nil {
		t.Fatal(err)
	}
	buggy := bytes.Contains(file, []byte("ExecStopPostEx="))
	run(t, "systemctl", "daemon-reload")
	if show := run(t, "systemctl", "show", "-p", "ExecStopPost", name); buggy == strings.Contains(show, "keter-test-hook") {
		t.Fatalf("Ex keys in the file: %v, yet after daemon-reload:\n%s", buggy, show)
	}
	n, err := c.RepairTransient(t.Context(), "keter-test-repair-")
	if err != nil || (n > 0) != buggy {
		t.Fatalf("RepairTransient = %d, %v; want %v repairs", n, err, buggy)
	}
	show := run(t, "systemctl", "show", "-p", "ExecStart,ExecStopPost", name)
	for _, want := range []string{"/bin/sleep", "keter-test-hook"} {
		if !strings.Contains(show, want) {
			t.Errorf("after the repair the unit lacks %q:\n%s", want, show)
		}
	}
}
