package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/keter-systemd/keter/internal/freeport"
	"github.com/keter-systemd/keter/portmap"
)

// nginxUnit is the nginx keter runs in managed mode. Its name is fixed, and
// a stopped transient unit can stay loaded in the sandbox (cgroup v1 removal
// fails), which makes the next keter's start fail: so run.sh gives each
// benchmark a sandbox of its own.
const nginxUnit = "keter-nginx.service"

// The app port range every benchmark keter gets.
// (a var: the thousand benchmark needs two ports per app and widens it).
var appPortsFrom, appPortsTo = 21000, 22999

// keter is one keter daemon running as a transient unit of the systemd
// keterbench runs under, the way e2e/harness_test.go starts it.
type keter struct {
	unit, root string
	port       int
	statusPort int // its status page and /metrics
}

// keterEnv is extra environment for keter (e.g. GODEBUG=gctrace=1 to see
// the Go heap in keter's journal); set by -keter-env.
var keterEnv []string

func startKeter(ctx context.Context, bin, base, name string) (*keter, error) {
	port, err := freeport.Get()
	if err != nil {
		return nil, err
	}
	return startKeterWith(ctx, bin, base, name, port, "", "")
}

// startKeterWith starts keter with its plain listener on port, more
// listener entries (YAML list items) and more top-level YAML.
func startKeterWith(ctx context.Context, bin, base, name string, port int, listeners, extra string) (*keter, error) {
	root := filepath.Join(base, name)
	if err := os.RemoveAll(root); err != nil {
		return nil, fmt.Errorf("clearing %s: %w", root, err)
	}
	if err := os.MkdirAll(filepath.Join(root, "incoming"), 0o755); err != nil {
		return nil, fmt.Errorf("creating %s: %w", root, err)
	}
	// DynamicUser app units must traverse every parent of their folder.
	for _, d := range []string{base, root} {
		if err := os.Chmod(d, 0o755); err != nil {
			return nil, fmt.Errorf("opening %s to app users: %w", d, err)
		}
	}
	statusPort, err := freeport.Get()
	if err != nil {
		return nil, err
	}
	k := &keter{unit: fmt.Sprintf("keter-bench-%s-%d.service", name, os.Getpid()), root: root, port: port, statusPort: statusPort}
	// App ports outside Linux's ephemeral range (32768-60999), where most of
	// Keter's default ranges lie: there an outgoing connection can take an
	// app's port between keter's probe and the app's bind (seen with 100
	// apps: "bind: address already in use").
	cfg := fmt.Sprintf("root: %s\nlisteners:\n  - host: 127.0.0.1\n    port: %d\n%sgraceful-drain-micros: 1000000\nnginx:\n  mode: managed\n  nft-table: "+benchTable+"\n"+
		"port-manager:\n  ranges:\n    - {from: %d, to: %d}\nstatus:\n  listen: 127.0.0.1:%d\n%s", root, port, listeners, appPortsFrom, appPortsTo, statusPort, extra)
	cfgPath := filepath.Join(root, "keter-config.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return nil, fmt.Errorf("writing keter config: %w", err)
	}
	args := []string{"--unit", k.unit, "-p", "Type=notify", "-p", "Restart=always",
		"-p", "RestartSec=100ms", "-p", "KillMode=process", "-p", "TimeoutStartSec=120"}
	for _, kv := range keterEnv {
		args = append(args, "-E", kv)
	}
	if _, err := command(ctx, "systemd-run", append(args, bin, "run", cfgPath)...); err != nil {
		log, _ := command(ctx, "journalctl", "-u", k.unit, "-n", "15", "-o", "cat", "--no-pager")
		k.stop(ctx)
		return nil, fmt.Errorf("starting keter: %w\nketer's log:\n%s", err, log)
	}
	return k, nil
}

// stop stops keter and everything it started (app units outlive keter by
// design), so the next benchmark starts from nothing.
func (k *keter) stop(ctx context.Context) {
	ctx = context.WithoutCancel(ctx)
	command(ctx, "systemctl", "stop", k.unit)
	k.keepLog(ctx)
	command(ctx, "systemctl", "stop", "keter-app-*", nginxUnit)
	command(ctx, "systemctl", "reset-failed")
	if err := portmap.New(benchTable).Remove(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
	}
}

// keepLog copies keter's journal out of the sandbox (it goes with the
// sandbox) to the temp folder, so a benchmark that failed can be read.
func (k *keter) keepLog(ctx context.Context) {
	out, err := command(ctx, "journalctl", "-u", k.unit, "-o", "short-monotonic", "--no-pager")
	if err != nil {
		return
	}
	path := filepath.Join(os.TempDir(), k.unit+".log")
	if os.WriteFile(path, []byte(out), 0o600) == nil {
		fmt.Fprintln(os.Stderr, "bench: keter's log kept in", path)
	}
}

// benchTable is the benchmarks' port map table, apart from a real keter's
// and from another keterbench's on the same host (the network namespace
// is the host's).
var benchTable = fmt.Sprintf("keterbench%d", os.Getpid())

func (k *keter) incoming() string { return filepath.Join(k.root, "incoming") }

// mainPID is keter's PID as seen in this PID namespace.
func (k *keter) mainPID(ctx context.Context) (int, error) {
	return unitPID(ctx, k.unit)
}

func unitPID(ctx context.Context, unit string) (int, error) {
	out, err := command(ctx, "systemctl", "show", "-p", "MainPID", "--value", unit)
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(out))
	if err != nil || pid == 0 {
		return 0, fmt.Errorf("unit %s has no main process (%q)", unit, strings.TrimSpace(out))
	}
	return pid, nil
}

// procStats is what /proc says about one process.
type procStats struct {
	rssKB, hwmKB int64
	anonKB       int64 // RssAnon: heap, stacks (not the mapped binary)
	threads      int64
	cpu          time.Duration // utime + stime
}

func readProc(pid int) (procStats, error) {
	var s procStats
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, fmt.Errorf("reading process status: %w", err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "VmRSS:":
			s.rssKB, _ = strconv.ParseInt(f[1], 10, 64)
		case "VmHWM:":
			s.hwmKB, _ = strconv.ParseInt(f[1], 10, 64)
		case "RssAnon:":
			s.anonKB, _ = strconv.ParseInt(f[1], 10, 64)
		case "Threads:":
			s.threads, _ = strconv.ParseInt(f[1], 10, 64)
		}
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, fmt.Errorf("reading process stat: %w", err)
	}
	// Fields after the command name, which may hold spaces: state is [0],
	// utime [11], stime [12], in USER_HZ (100 on Linux).
	rest := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	if len(rest) < 13 {
		return s, errors.New("short /proc stat line")
	}
	ut, _ := strconv.ParseInt(rest[11], 10, 64)
	st, _ := strconv.ParseInt(rest[12], 10, 64)
	s.cpu = time.Duration(ut+st) * 10 * time.Millisecond
	return s, nil
}

// logEntry is one line keter logged, with journald's timestamp.
type logEntry struct {
	at     time.Time
	msg    string
	fields map[string]string
	raw    string
}

// journal returns every line of keter's unit log.
func (k *keter) journal(ctx context.Context) ([]logEntry, error) {
	return unitJournal(ctx, k.unit)
}

func unitJournal(ctx context.Context, unit string) ([]logEntry, error) {
	out, err := command(ctx, "journalctl", "-u", unit, "-o", "json", "--no-pager", "-q",
		"--output-fields=MESSAGE")
	if err != nil {
		return nil, fmt.Errorf("reading journal of %s: %w", unit, err)
	}
	var entries []logEntry
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var raw struct {
			Realtime string          `json:"__REALTIME_TIMESTAMP"`
			Message  json.RawMessage `json:"MESSAGE"`
		}
		if json.Unmarshal(sc.Bytes(), &raw) != nil {
			continue
		}
		var msg string
		if json.Unmarshal(raw.Message, &msg) != nil {
			continue // binary message, not one of keter's
		}
		us, _ := strconv.ParseInt(raw.Realtime, 10, 64)
		fields := parseLogfmt(msg)
		entries = append(entries, logEntry{at: time.UnixMicro(us), msg: fields["msg"], fields: fields, raw: msg})
	}
	return entries, nil
}

// parseLogfmt reads slog's text format: key=value or key="quoted value".
func parseLogfmt(line string) map[string]string {
	fields := map[string]string{}
	for line != "" {
		line = strings.TrimLeft(line, " ")
		eq := strings.IndexByte(line, '=')
		if eq <= 0 {
			break
		}
		key := line[:eq]
		line = line[eq+1:]
		var val string
		if strings.HasPrefix(line, `"`) {
			end := 1
			for end < len(line) && line[end] != '"' {
				if line[end] == '\\' {
					end++
				}
				end++
			}
			if end >= len(line) {
				end = len(line) - 1
			}
			quoted := line[:end+1]
			if v, err := strconv.Unquote(quoted); err == nil {
				val = v
			} else {
				val = strings.Trim(quoted, `"`)
			}
			line = line[end+1:]
		} else {
			sp := strings.IndexByte(line, ' ')
			if sp < 0 {
				sp = len(line)
			}
			val, line = line[:sp], line[sp:]
		}
		fields[key] = val
	}
	return fields
}

// count returns how many entries carry msg.
func count(entries []logEntry, msg string) int {
	n := 0
	for _, e := range entries {
		if e.msg == msg {
			n++
		}
	}
	return n
}

func filter(entries []logEntry, msg string) []logEntry {
	var out []logEntry
	for _, e := range entries {
		if e.msg == msg {
			out = append(out, e)
		}
	}
	return out
}

// waitLog polls keter's journal until at least n entries carry msg.
func (k *keter) waitLog(ctx context.Context, msg string, n int, within time.Duration) ([]logEntry, error) {
	deadline := time.Now().Add(within)
	for {
		entries, err := k.journal(ctx)
		if err != nil {
			return nil, err
		}
		if count(entries, msg) >= n {
			return entries, nil
		}
		if time.Now().After(deadline) {
			return entries, fmt.Errorf("keter logged %q %d times within %s, want %d", msg, count(entries, msg), within, n)
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			return nil, err
		}
	}
}

// waitReady waits until keter logged "keter ready" the first time.
func (k *keter) waitReady(ctx context.Context) error {
	_, err := k.waitLog(ctx, "keter ready", 1, 60*time.Second)
	return err
}

func command(ctx context.Context, name string, args ...string) (string, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("running %s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
