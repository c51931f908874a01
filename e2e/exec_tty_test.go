package e2e

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keter-systemd/keter/internal/testkit"
)

// syncBuffer is a strings.Builder several goroutines may use.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// exitCode waits for cmd and returns its exit code.
func exitCode(t *testing.T, cmd *exec.Cmd) int {
	t.Helper()
	err := cmd.Wait()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		return ee.ExitCode()
	case err != nil:
		t.Fatalf("%v: %v", cmd.Args, err)
	}
	return 0
}

// onTerminal runs the real keter exec on a pseudo-terminal (util-linux
// script), as an operator's shell would; its returned writer types on
// that terminal.
func onTerminal(t *testing.T, args string) (*exec.Cmd, io.WriteCloser, *syncBuffer) {
	t.Helper()
	if _, err := exec.LookPath("script"); err != nil {
		testkit.Missing(t, "no script (util-linux): %v", err)
	}
	// exec: no shell between the terminal and keter exec, which gets the
	// terminal's SIGINT itself.
	cmd := exec.Command("script", "-qfec", "exec "+keterBinary(t)+" "+args, "/dev/null")
	typed, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	return cmd, typed, out
}

// TestExecTerminal: Ctrl-C typed on the terminal of the real keter exec
// reaches the command as SIGINT: a command that traps it exits with its
// own status, which keter exec passes through; one that does not dies of
// it (130). A deploy while a command runs keeps the old version's folder
// until the command ends. The app's process is never touched.
func TestExecTerminal(t *testing.T) {
	tok := testkit.Token()
	name, host := "tty"+tok, "tty-"+tok+".test"
	t.Cleanup(func() { os.RemoveAll("/var/lib/private/keter-app-" + name) }) // after the harness stopped the units
	k := startKeter(t, "")
	cfg := k.config()
	bin, err := os.ReadFile(testkit.DemoApp(t))
	if err != nil {
		t.Fatal(err)
	}
	bundle := func(msg string) string {
		src := filepath.Join(k.Root, msg, name+".keter")
		if err := os.MkdirAll(filepath.Dir(src), 0o755); err != nil {
			t.Fatal(err)
		}
		testkit.Bundle(t, src, map[string]testkit.File{
			"config/keter.yaml": {Body: []byte(fmt.Sprintf("stanzas:\n  - type: webapp\n    exec: ../bin/demoapp\n    args: [--message, %s]\n    host: %s\n", msg, host))},
			"bin/demoapp":       {Body: bin, Mode: 0o755},
		})
		return src
	}
	mustCLI(t, 0, "deploy", "-c", cfg, bundle("v1"))
	k.WaitBody(host, "v1", 30*time.Second)
	units := activeAppUnits(t)
	if len(units) != 1 {
		t.Fatalf("app units %v, want one", units)
	}
	pid := unitProp(t, units[0], "MainPID")

	for _, c := range []struct {
		name, script, want string
		code               int
	}{
		// Short sleeps: a Ctrl-C between two still ends the loop at the
		// next (sh runs a trap once its foreground child returns).
		{"trapped", `trap "echo trapped; exit 7" INT; echo ready; i=0; while [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done; echo not-interrupted`, "trapped", 7},
		{"default", `echo ready; exec sleep 60`, "", 130},
	} {
		t.Run(c.name, func(t *testing.T) {
			cmd, typed, out := onTerminal(t, fmt.Sprintf("exec -c %s %s -- sh -c '%s'", cfg, name, c.script))
			eventually(t, 30*time.Second, func() error {
				if !strings.Contains(out.String(), "ready") {
					return fmt.Errorf("terminal shows %q", out.String())
				}
				return nil
			})
			typed.Write([]byte{3}) // Ctrl-C
			done := make(chan int, 1)
			go func() { done <- exitCode(t, cmd) }()
			var code int
			select {
			case code = <-done:
			case <-time.After(30 * time.Second):
				t.Fatalf("keter exec still running 30 s after Ctrl-C; terminal: %q", out.String())
			}
			typed.Close()
			if code != c.code || !strings.Contains(out.String(), c.want) || strings.Contains(out.String(), "not-interrupted") {
				t.Errorf("after Ctrl-C: exit %d, terminal %q; want exit %d and %q", code, out.String(), c.code, c.want)
			}
		})
	}
	if journal := run(t, "journalctl", "--no-pager", "-o", "cat", "KETER_APP="+name, "KETER_STANZA=exec"); !strings.Contains(journal, "exec ended (exit status 7)") {
		t.Errorf("journal lacks the trapped command's end:\n%s", journal)
	}

	if now := unitProp(t, units[0], "MainPID"); now != pid {
		t.Errorf("the app's PID is %s after the commands, was %s", now, pid)
	}

	// A deploy while a command runs: the command keeps its folder. It
	// goes on (reads its stdin) only once v1 is stopped, which is when
	// the folder would go.
	v1Dir := jobsApp(t, k, name).Live.Dir
	cmd := exec.Command(keterBinary(t), "exec", "-c", cfg, name, "--", "sh", "-c", "echo started; read go; echo kept > exec-wrote && cat exec-wrote && pwd")
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	goOn, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, func() error {
		if !strings.Contains(out.String(), "started") {
			return fmt.Errorf("exec shows %q", out.String())
		}
		return nil
	})
	mustCLI(t, 0, "deploy", "-c", cfg, bundle("v2"))
	k.WaitBody(host, "v2", 30*time.Second)
	eventually(t, 30*time.Second, func() error {
		if st := unitProp(t, units[0], "ActiveState"); st != "inactive" && st != "failed" {
			return fmt.Errorf("v1's unit %s is %s", units[0], st)
		}
		return nil
	})
	time.Sleep(time.Second) // the folder would be deleted right after
	if _, err := os.Stat(v1Dir); err != nil {
		t.Errorf("v1's folder is gone while a keter exec command runs in it: %v", err)
	}
	goOn.Write([]byte("go\n"))
	goOn.Close()
	if code := exitCode(t, cmd); code != 0 || out.String() != "started\nkept\n"+v1Dir+"\n" {
		t.Errorf("exec across a deploy: exit %d, output %q; want 0 and kept written in %s", code, out.String(), v1Dir)
	}
	for _, l := range strings.Split(k.Log(), "\n") {
		if strings.Contains(l, `msg="version live"`) || strings.Contains(l, "still runs in the old version") {
			t.Log(strings.TrimSpace(l))
		}
	}
	eventually(t, 30*time.Second, func() error {
		if _, err := os.Stat(v1Dir); err == nil {
			return fmt.Errorf("v1's folder %s is still there after the command ended", v1Dir)
		}
		return nil
	})
}
