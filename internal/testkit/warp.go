package testkit

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
)

var (
	warpOnce sync.Once
	warpPath string
	warpErr  error
)

// WarpApp compiles internal/warpapp (a GHC Warp web app) once per test
// binary with Debian's ghc and libghc-warp-dev and returns the binary.
func WarpApp(t testing.TB) string {
	t.Helper()
	ghc := NeedBinary(t, "ghc", "apt-get install ghc libghc-warp-dev, or run scripts/deps.sh")
	if err := exec.Command("ghc-pkg", "--simple-output", "field", "warp", "version").Run(); err != nil {
		Missing(t, "GHC has no warp package (apt-get install libghc-warp-dev, or run scripts/deps.sh)")
	}
	warpOnce.Do(func() {
		dir, err := os.MkdirTemp("", "keter-warpapp-")
		if err != nil {
			warpErr = err
			return
		}
		_, self, _, _ := runtime.Caller(0)
		src := filepath.Join(filepath.Dir(self), "..", "warpapp", "Main.hs")
		warpPath = filepath.Join(dir, "warpapp")
		cmd := exec.Command(ghc, "-O0", "-threaded", "-outputdir", filepath.Join(dir, "build"), "-o", warpPath, src)
		if out, err := cmd.CombinedOutput(); err != nil {
			warpErr = &buildError{out: string(out), err: err}
		}
	})
	if warpErr != nil {
		t.Fatalf("building the GHC Warp app: %v", warpErr)
	}
	return warpPath
}
