package app

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/keter-systemd/keter/unitgen"
)

// Units answer a denied system call with EPERM instead of killing the
// app, so there is no SIGSYS to go by. What an app that the sandbox
// stopped leaves behind is how it ended (a JIT runtime under W^X dies of
// SIGTRAP or SIGSEGV, or quits) and an error in its last lines. sandboxHint
// reads both and names the likely setting and what to do about it.

// jitSignals are the signals a JIT runtime dies of when it cannot make
// memory executable: V8 traps (SIGTRAP), others fault.
var jitSignals = map[int32]string{4: "SIGILL", 5: "SIGTRAP", 7: "SIGBUS", 11: "SIGSEGV"}

// wxMessages are what runtimes print when W^X refuses them.
var wxMessages = []string{
	"Failed to mark memory page as executable", // OpenJDK
	"Allocation of JIT memory failed",          // PHP's PCRE JIT
	"MemoryChunk allocation failed",            // Node.js 18 (V8)
	"v8::base::OS::SetPermissions",             // Node.js 20 (V8), in its stack trace
}

// rule is one sandbox setting recognised from the app's last lines.
type rule struct {
	match  *regexp.Regexp
	advice string // %s is the app's name
}

// rules are tried in order; each adds its advice at most once. Messages
// match in any case (Go and Node.js write "read-only file system"), errno
// names only in capitals (an app may be called "erofs").
var rules = []rule{
	{regexp.MustCompile(`(?i:read-only file system)|\bEROFS\b`),
		"ProtectSystem=strict makes the system read-only to apps: write in the app's own folder (its working directory, deleted with the version), $STATE_DIRECTORY (/var/lib/keter-app-%s, kept across versions) or /tmp (private to the app) instead; no setting opens other paths"},
	{regexp.MustCompile(`(?i:address family not supported)|\bEAFNOSUPPORT\b`),
		"RestrictAddressFamilies= allows only Unix, IPv4 and IPv6 sockets; no setting opens others"},
	{regexp.MustCompile(`(?i:operation not permitted)|\bEPERM\b`),
		"apps have no capabilities, NoNewPrivileges, and system calls outside @system-service (and the @privileged and @resources ones: setuid, chown, mount, setpriority, ...) fail with EPERM; no setting lifts these: drop the call (the app already runs as its own user)"},
	{regexp.MustCompile(`(?i:permission denied)|\bEACCES\b`),
		"the app runs as its own unprivileged user (keter-app-%s, or setuid's user) with /home and /root hidden (ProtectHome) and no devices (PrivateDevices): it reads only files others may read and binds only ports from 1024 up (listen on $PORT)"},
}

// notSandbox are lines that look like a rule but are an app's own
// business, such as PostgreSQL refusing a role ("permission denied for
// table t").
var notSandbox = regexp.MustCompile(`(?i)permission denied (for|to) `)

// exitLine is systemd's record of how the main process ended.
var exitLine = regexp.MustCompile(`Main process exited, code=(exited|killed|dumped), status=(\d+)`)

// sandboxHint names the sandbox settings that likely stopped app, from its
// unit's status (found is false once the unit is gone), its last lines
// (oldest first) and whether W^X was on; "" when nothing points there.
func sandboxHint(app string, st unitgen.Status, found bool, lines []string, denyWX bool) string {
	var hints []string
	if denyWX {
		if sig, ok := lastSignal(st, found, lines); ok {
			hints = append(hints, wxHint("it was killed by "+sig))
		} else if msg := firstContained(lines, wxMessages); msg != "" {
			hints = append(hints, wxHint(fmt.Sprintf("it printed %q", msg)))
		}
	}
	for _, r := range rules {
		if m := firstMatch(lines, r.match); m != "" {
			advice := r.advice
			if strings.Contains(advice, "%s") {
				advice = fmt.Sprintf(advice, app)
			}
			hints = append(hints, fmt.Sprintf("it printed %q: %s", m, advice))
		}
	}
	if len(hints) == 0 {
		return ""
	}
	return "likely stopped by the sandbox: " + strings.Join(hints, "; and ")
}

func wxHint(what string) string {
	return what + " with W^X on: MemoryDenyWriteExecute keeps JIT compilers (Node.js, the JVM, PHP's PCRE JIT) from making code executable; " +
		"remove memory-deny-write-execute: true (or allow-jit: false) from the stanza's systemd: settings, W^X is off by default"
}

// lastSignal is the JIT-crash signal that ended the last main process, from
// systemd's status or, when a new process already runs, from its last
// "Main process exited" line.
func lastSignal(st unitgen.Status, found bool, lines []string) (string, bool) {
	code, status := int32(0), int32(0)
	if found && st.ExecMainCode != 0 {
		code, status = st.ExecMainCode, st.ExecMainStatus
	} else {
		for i := len(lines) - 1; i >= 0; i-- {
			m := exitLine.FindStringSubmatch(lines[i])
			if m == nil {
				continue
			}
			code = map[string]int32{"exited": unitgen.CodeExited, "killed": unitgen.CodeKilled, "dumped": unitgen.CodeDumped}[m[1]]
			n, _ := strconv.Atoi(m[2])
			status = int32(n)
			break
		}
	}
	if code != unitgen.CodeKilled && code != unitgen.CodeDumped {
		return "", false
	}
	sig, ok := jitSignals[status]
	return sig, ok
}

func firstContained(lines, subs []string) string {
	for _, l := range lines {
		for _, s := range subs {
			if strings.Contains(l, s) {
				return s
			}
		}
	}
	return ""
}

// firstMatch is the first text re matches in lines, skipping lines that
// are the app's own permission business.
func firstMatch(lines []string, re *regexp.Regexp) string {
	for _, l := range lines {
		if notSandbox.MatchString(l) {
			continue
		}
		if m := re.FindString(l); m != "" {
			return m
		}
	}
	return ""
}

// diagnoseLines is how much of the journal the diagnosis reads: a V8
// stack trace alone is 20 lines.
const diagnoseLines = 200

func appOfUnit(unit string) string {
	m, _ := unitgen.ParseUnitName(unit)
	return m.App
}
