package e2e

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keter-systemd/keter/internal/testkit"
)

// execCLI runs keter exec with stdin and returns stdout, stderr and the
// exit code.
func execCLI(t *testing.T, stdin string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(keterBinary(t), args...)
	var stdout, stderr strings.Builder
	cmd.Stdin, cmd.Stdout, cmd.Stderr = strings.NewReader(stdin), &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	code := 0
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatalf("running keter %v: %v", args, err)
	}
	return stdout.String(), stderr.String(), code
}

// TestExec: keter exec runs a command in the live version's folder with
// its environment and user; its output, stdin and exit status pass
// through; the running app is not touched; a member of the deploy group
// may run it; bad requests get clear errors; the journal records who ran
// what and how it ended, with the app's fields.
func TestExec(t *testing.T) {
	tok := testkit.Token()
	group, member, stranger := "kxg"+tok, "kxu"+tok, "kxs"+tok
	for _, c := range [][]string{{"groupadd", "--system", group}, {"useradd", "--system", "-M", "-G", group, member}, {"useradd", "--system", "-M", stranger}} {
		if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			testkit.Missing(t, "%s: %v %s", strings.Join(c, " "), err, out)
		}
	}
	t.Cleanup(func() {
		exec.Command("userdel", member).Run()
		exec.Command("userdel", stranger).Run()
		exec.Command("groupdel", group).Run()
	})
	k := startKeter(t, "deploy-group: "+group+"\n")
	name, host, secret := "ex"+tok, "ex-"+tok+".test", "exec-env-"+tok
	bin, err := os.ReadFile(testkit.DemoApp(t))
	if err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(k.Root, name+".src")
	testkit.Bundle(t, src, map[string]testkit.File{
		"config/keter.yaml": {Body: []byte(fmt.Sprintf("stanzas:\n  - type: webapp\n    exec: ../bin/demoapp\n    args: [--message, up]\n    host: %s\n    env:\n      SOME_ENV: %s\n", host, secret))},
		"bin/demoapp":       {Body: bin, Mode: 0o755},
	})
	k.Drop(src, name+".keter")
	k.WaitBody(host, "up", 60*time.Second)
	units := activeAppUnits(t)
	if len(units) != 1 {
		t.Fatalf("app units %v, want one", units)
	}
	pid := strings.TrimSpace(run(t, "systemctl", "show", "-p", "MainPID", "--value", units[0]))
	cfg := k.config()

	// Output, environment, folder and exit status.
	out, errOut, code := execCLI(t, "", "exec", "-c", cfg, name, "--", "sh", "-c", `echo "$SOME_ENV"; pwd; echo to-stderr >&2; exit 7`)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 7 || len(lines) != 2 || lines[0] != secret || !strings.HasPrefix(lines[1], filepath.Join(k.Root, "temp", name)+"-") || strings.TrimSpace(errOut) != "to-stderr" {
		t.Fatalf("keter exec: exit %d, stdout %q, stderr %q: want 7, the app's SOME_ENV and folder, to-stderr", code, out, errOut)
	}
	// stdin passes through; the command runs as the app's user, not root.
	out, errOut, code = execCLI(t, "hi from stdin\n", "exec", "-c", cfg, name, "--", "sh", "-c", "cat; id -u")
	if lines := strings.Split(strings.TrimSpace(out), "\n"); code != 0 || len(lines) != 2 || lines[0] != "hi from stdin" || lines[1] == "0" {
		t.Fatalf("echo hi | keter exec %s -- cat: exit %d, stdout %q, stderr %q", name, code, out, errOut)
	}
	// Without "--", all after APP is the command.
	if out, errOut, code := execCLI(t, "", "exec", "-c", cfg, name, "sh", "-c", "exit 3"); code != 3 {
		t.Fatalf("keter exec without --: exit %d %q %q, want 3", code, out, errOut)
	}

	// A member of the deploy group, through a pipe of their own.
	cliBin := filepath.Join(k.Root, "keter")
	data, err := os.ReadFile(keterBinary(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cliBin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	as := func(user, script string) (string, error) {
		out, err := exec.Command("setpriv", "--reuid="+user, "--regid="+user, "--init-groups", "sh", "-c", script).CombinedOutput()
		return string(out), err
	}
	if out, err := as(member, fmt.Sprintf(`echo from-member | %s exec -c %s %s -- sh -c 'cat; echo "$SOME_ENV"'`, cliBin, cfg, name)); err != nil || strings.TrimSpace(out) != "from-member\n"+secret {
		t.Fatalf("keter exec as a deploy-group member: %v %q", err, out)
	}
	if out, err := as(stranger, fmt.Sprintf("%s exec -c %s %s -- true", cliBin, cfg, name)); err == nil || !strings.Contains(out, "permission denied") {
		t.Fatalf("keter exec as a user outside the group: %v %q, want permission denied", err, out)
	}

	// Clear errors.
	if _, errOut, code := execCLI(t, "", "exec", "-c", cfg, "nosuchapp"+tok, "--", "true"); code != 1 || !strings.Contains(errOut, "no such app") || !strings.Contains(errOut, "nosuchapp"+tok) {
		t.Fatalf("keter exec of an unknown app: exit %d, stderr %q", code, errOut)
	}
	if _, errOut, code := execCLI(t, "", "exec", "-c", cfg, name, "--"); code != 2 || !strings.Contains(errOut, "no command") {
		t.Fatalf("keter exec without a command: exit %d, stderr %q", code, errOut)
	}
	if out, errOut, code := execCLI(t, "", "exec", "-c", cfg, name, "--", "no-such-command-"+tok); code != 127 || !strings.Contains(errOut, "not found") {
		t.Fatalf("keter exec of a missing command: exit %d, stdout %q, stderr %q: want 127, not found", code, out, errOut)
	}

	// The app is untouched: same unit, same process, still serving; no
	// exec unit, launcher or env file is left.
	if now := activeAppUnits(t); !slices.Equal(now, units) {
		t.Errorf("app units %v after exec, want %v", now, units)
	}
	if now := strings.TrimSpace(run(t, "systemctl", "show", "-p", "MainPID", "--value", units[0])); now != pid {
		t.Errorf("the app's PID changed: %s, was %s", now, pid)
	}
	k.WaitBody(host, "up", 5*time.Second)
	eventually(t, 10*time.Second, func() error {
		out, _ := exec.Command("systemctl", "list-units", "--all", "--plain", "--no-legend", "keter-app-*-exec.*").Output()
		if s := strings.TrimSpace(string(out)); s != "" {
			return fmt.Errorf("exec units left: %s", s)
		}
		return nil
	})
	if left, _ := filepath.Glob(filepath.Join(k.Root, "temp", name+"-*", ".keter-exec-*")); len(left) > 0 {
		t.Errorf("launchers left: %v", left)
	}
	if left, _ := filepath.Glob(filepath.Join(k.Root, "etc", "env", "*-exec.*")); len(left) > 0 {
		t.Errorf("env files left: %v", left)
	}

	// The journal: who ran what and how it ended, with the app's fields
	// (the command's output went to the caller, not to the journal).
	journal := run(t, "journalctl", "--no-pager", "-o", "cat", "KETER_APP="+name, "KETER_STANZA=exec")
	for _, want := range []string{
		`exec started by 0/root: sh -c 'echo "$SOME_ENV"; pwd; echo to-stderr >&2; exit 7'`,
		"exec ended (exit status 7), started by 0/root",
		"exec ended (exit status 0), started by 0/root: sh -c 'cat; id -u'",
		"exec started by ",
		"/" + member + ": sh -c",
	} {
		if !strings.Contains(journal, want) {
			t.Errorf("journal of %s lacks %q:\n%s", name, want, journal)
		}
	}
	if !strings.Contains(k.Log(), `msg="exec ended"`) {
		t.Errorf("keter's log lacks exec ended")
	}
}
