package unitgen

import (
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/keter-systemd/keter/internal/testkit"
)

// TestOwnFolderScript runs the own-folder script as the units run it:
// a folder keter unpacked as root, or one a reboot left to a user of
// an earlier UID, goes to the state directory's owner, links not
// followed; a folder already owned right is not touched (an automatic
// restart); a missing state directory fails the start.
func TestOwnFolderScript(t *testing.T) {
	if os.Geteuid() != 0 {
		testkit.Missing(t, "the own-folder script chowns: run as root")
	}
	script := filepath.Join(t.TempDir(), OwnFolderFile)
	if err := os.WriteFile(script, []byte(OwnFolderScript), 0o644); err != nil {
		t.Fatal(err)
	}
	const uid, gid = 61234, 61234
	run := func(dir, state string) error {
		out, err := exec.Command("/bin/sh", script, dir, state).CombinedOutput()
		if err != nil {
			t.Logf("own-folder: %s", out)
		}
		return err
	}
	owner := func(p string) (int, int, int64) {
		var st syscall.Stat_t
		if err := syscall.Lstat(p, &st); err != nil {
			t.Fatal(err)
		}
		return int(st.Uid), int(st.Gid), st.Ctim.Nano()
	}
	setup := func(from int) (dir, state, outside string) {
		base := t.TempDir()
		dir, state, outside = filepath.Join(base, "app-1"), filepath.Join(base, "state"), filepath.Join(base, "outside")
		for _, d := range []string{filepath.Join(dir, "sub"), state} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		for _, f := range []string{filepath.Join(dir, "a"), filepath.Join(dir, "sub", "b"), outside} {
			if err := os.WriteFile(f, []byte("x"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Symlink(outside, filepath.Join(dir, "link")); err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{dir, filepath.Join(dir, "a"), filepath.Join(dir, "sub"), filepath.Join(dir, "sub", "b")} {
			if err := os.Lchown(p, from, from); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Chown(state, uid, gid); err != nil {
			t.Fatal(err)
		}
		return dir, state, outside
	}
	for _, from := range []int{0, 61000} {
		dir, state, outside := setup(from)
		if err := run(dir, state); err != nil {
			t.Fatalf("from %d: %v", from, err)
		}
		for _, p := range []string{dir, filepath.Join(dir, "a"), filepath.Join(dir, "sub", "b"), filepath.Join(dir, "link")} {
			if u, g, _ := owner(p); u != uid || g != gid {
				t.Errorf("from %d: %s owned by %d:%d, want %d:%d", from, p, u, g, uid, gid)
			}
		}
		if u, _, _ := owner(outside); u != os.Geteuid() {
			t.Errorf("from %d: the link was followed: its target is owned by %d", from, u)
		}
	}

	// Owned right already: nothing is chowned (chown would move ctime).
	dir, state, _ := setup(uid)
	_, _, before := owner(filepath.Join(dir, "sub", "b"))
	if err := run(dir, state); err != nil {
		t.Fatal(err)
	}
	if _, _, after := owner(filepath.Join(dir, "sub", "b")); after != before {
		t.Error("a folder owned right was chowned again: a restart walks the whole folder")
	}

	if err := run(dir, filepath.Join(dir, "no-such-state")); err == nil {
		t.Error("a missing state directory did not fail the step")
	}
}
