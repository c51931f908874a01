package app

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keter-systemd/keter/internal/testkit"
	"github.com/keter-systemd/keter/unitgen"
)

// Lines below are what real apps printed in the sandbox systemd (cut).
var (
	node20WX = []string{
		"# Fatal error in , line 0",
		"# Check failed: 12 == (*__errno_location ()).",
		" 3: 0x21556a7 v8::base::OS::SetPermissions(void*, unsigned long, v8::base::OS::MemoryPermission) [/usr/bin/node]",
		"14: 0xf3d5d7 v8::internal::baseline::BaselineCompiler::Build(v8::internal::LocalIsolate*) [/usr/bin/node]",
		"keter-app-n-1-web0.service: Main process exited, code=killed, status=5/TRAP",
		"keter-app-n-1-web0.service: Failed with result 'signal'.",
	}
	node18WX = []string{
		"# Fatal javascript OOM in MemoryChunk allocation failed during deserialization.",
		"keter-app-n-1-web0.service: Main process exited, code=killed, status=5/TRAP",
	}
	javaWX = []string{
		"Error occurred during initialization of VM",
		"Failed to mark memory page as executable - check if grsecurity/PaX is enabled",
		"keter-app-j-1-web0.service: Main process exited, code=exited, status=1/FAILURE",
	}
	phpWX = []string{
		"[Wed Dec  2 03:15:07 2026] PHP Warning:  preg_match(): Allocation of JIT memory failed, PCRE JIT will be disabled. This is likely caused by security restrictions.",
	}
	pyEROFS = []string{
		`    open("/usr/keter-test", "w")`,
		"OSError: [Errno 30] Read-only file system: '/usr/keter-test'",
		"keter-app-p-1-web0.service: Main process exited, code=exited, status=1/FAILURE",
	}
	pyEPERM = []string{
		"PermissionError: [Errno 1] Operation not permitted: '/var/lib/keter-app-p'",
		"keter-app-p-1-web0.service: Main process exited, code=exited, status=1/FAILURE",
	}
	pyEACCES = []string{
		"PermissionError: [Errno 13] Permission denied: '/root/.profile'",
		"keter-app-p-1-web0.service: Main process exited, code=exited, status=1/FAILURE",
	}
	pyAF = []string{
		"OSError: [Errno 97] Address family not supported by protocol",
	}
	goEROFS = []string{"open /usr/share/app/cache: read-only file system"}
)

func TestSandboxHint(t *testing.T) {
	trap := unitgen.Status{ExecMainCode: unitgen.CodeKilled, ExecMainStatus: 5}
	segv := unitgen.Status{ExecMainCode: unitgen.CodeDumped, ExecMainStatus: 11}
	exit1 := unitgen.Status{ExecMainCode: unitgen.CodeExited, ExecMainStatus: 1}
	running := unitgen.Status{ActiveState: "active"} // a new process already runs
	tests := []struct {
		name   string
		st     unitgen.Status
		found  bool
		lines  []string
		denyWX bool
		want   []string // substrings; none means no hint at all
	}{
		{"node 20 under W^X", trap, true, node20WX, true, []string{"killed by SIGTRAP with W^X on", "memory-deny-write-execute: true", "off by default"}},
		{"node 18 under W^X", trap, true, node18WX, true, []string{"killed by SIGTRAP"}},
		{"signal read from the journal while a new process runs", running, true, node20WX, true, []string{"killed by SIGTRAP"}},
		{"signal read from the journal once the unit is gone", unitgen.Status{}, false, node18WX, true, []string{"killed by SIGTRAP"}},
		{"SIGSEGV with a core under W^X", segv, true, nil, true, []string{"killed by SIGSEGV"}},
		{"java under W^X", exit1, true, javaWX, true, []string{`printed "Failed to mark memory page as executable" with W^X on`}},
		{"php under W^X", exit1, true, phpWX, true, []string{`"Allocation of JIT memory failed"`}},
		{"SIGTRAP without W^X is the app's own crash", trap, true, node20WX, false, nil},
		{"a clean exit 1", exit1, true, []string{"demoapp exiting with 1 as asked"}, true, nil},
		{"EROFS", exit1, true, pyEROFS, false, []string{`printed "Read-only file system"`, "ProtectSystem=strict", "/var/lib/keter-app-shop"}},
		{"EROFS, Go's spelling", exit1, true, goEROFS, false, []string{`"read-only file system"`}},
		{"EPERM", exit1, true, pyEPERM, false, []string{`"Operation not permitted"`, "@system-service"}},
		{"EACCES", exit1, true, pyEACCES, false, []string{`"Permission denied"`, "keter-app-shop", "ProtectHome"}},
		{"address family", exit1, true, pyAF, false, []string{"RestrictAddressFamilies"}},
		{"an app named like an errno", exit1, true,
			[]string{"keter-app-erofs-1-web0.service: Main process exited, code=exited, status=1/FAILURE"}, false, nil},
		{"Node.js's EROFS", exit1, true, []string{"Error: EROFS: read-only file system, open '/usr/x'"}, false, []string{`"EROFS"`}},
		{"PostgreSQL's permission denied is the app's business", exit1, true,
			[]string{`ERROR:  permission denied for table users`}, false, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := sandboxHint("shop", tt.st, tt.found, tt.lines, tt.denyWX)
			if len(tt.want) == 0 {
				if got != "" {
					t.Fatalf("hint %q, want none", got)
				}
				return
			}
			if !strings.HasPrefix(got, "likely stopped by the sandbox: ") {
				t.Fatalf("hint %q", got)
			}
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("hint lacks %q:\n%s", w, got)
				}
			}
		})
	}
}

// TestDeployFailureNamesSandboxSetting: a version that keeps dying of
// SIGTRAP is refused with the W^X hint when its stanza turned W^X on, in
// the error and in the status, on top of its last lines; without W^X the
// same crash is the app's own and gets no hint.
func TestDeployFailureNamesSandboxSetting(t *testing.T) {
	for _, tt := range []struct {
		name, systemd string
		wantHint      bool
	}{
		{"WX on", "    systemd:\n      memory-deny-write-execute: true\n", true},
		{"default", "", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			units := newFakeUnits()
			units.failing["web"] = "trap"
			units.journal["web"] = node20WX
			h := newHarness(t, units)
			src := filepath.Join(t.TempDir(), "web.keter")
			testkit.Bundle(t, src, map[string]testkit.File{
				"config/keter.yaml": {Body: []byte("stanzas:\n  - type: webapp\n    exec: ../app\n    host: web.test\n" + tt.systemd)},
				"app":               {Body: []byte("#!/bin/sh\n"), Mode: 0o755},
			})
			if err := os.Rename(src, filepath.Join(h.cfg.Incoming(), "web.keter")); err != nil {
				t.Fatal(err)
			}
			s := h.waitStatus("web", func(s AppStatus) bool { return s.LastResult == "failed" })
			if !strings.Contains(s.LastError, "crash-looping") || len(s.LastLog) == 0 {
				t.Fatalf("error %q with log %v", s.LastError, s.LastLog)
			}
			if got := s.LastHint != ""; got != tt.wantHint {
				t.Fatalf("hint %q, want one: %v", s.LastHint, tt.wantHint)
			}
			if tt.wantHint && !strings.Contains(s.LastHint, "killed by SIGTRAP with W^X on") {
				t.Fatalf("hint %q", s.LastHint)
			}
		})
	}
}
