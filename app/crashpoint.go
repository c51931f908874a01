package app

import (
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// crashpoint lets the end-to-end tests SIGKILL keter between two deploy
// steps, once, to prove that the next start converges. It does nothing
// unless KETER_TEST_CRASHPOINT names this point.
func (m *Manager) crashpoint(point string) {
	if os.Getenv("KETER_TEST_CRASHPOINT") != point {
		return
	}
	marker := filepath.Join(m.cfg.Etc(), "crashpoint-"+point)
	if _, err := os.Stat(marker); err == nil {
		return
	}
	if err := os.WriteFile(marker, nil, 0o600); err != nil {
		return
	}
	m.log.Warn("test crashpoint reached, killing keter", "point", point)
	syscall.Kill(os.Getpid(), syscall.SIGKILL)
	time.Sleep(time.Hour)
}
