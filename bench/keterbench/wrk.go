package main

import (
	"bytes"
	"context"
	_ "embed"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

var (
	//go:embed wrk-count.lua
	countScript string
	//go:embed wrk-summary.lua
	summaryScript string
)

// wrkResult is wrk's summary as the embedded Lua scripts print it.
type wrkResult struct {
	Requests                              int64
	Duration                              time.Duration
	Non2xx                                int64 // -1 when the script did not count it
	Status, Connect, Read, Write, Timeout int64
	P50, P90, P99, Max                    time.Duration
	Command                               string
	CPU                                   map[string]time.Duration `json:",omitempty"` // per party: wrk's own, and units' (ab.go)
	TCP                                   map[string]int64         `json:",omitempty"` // the host's TCP counters' change (cpu.go)
}

func (r wrkResult) RPS() float64 { return float64(r.Requests) / r.Duration.Seconds() }

// Failed counts every request that did not get a 2xx: responses that were
// not 2xx plus socket errors (connect, read, write, timeout).
func (r wrkResult) Failed() int64 {
	bad := r.Non2xx
	if bad < 0 {
		bad = r.Status
	}
	return bad + r.Connect + r.Read + r.Write + r.Timeout
}

// breakdown names the kinds of failure, e.g. "3 non-2xx, 2 read".
func (r wrkResult) breakdown() string {
	var parts []string
	bad := r.Non2xx
	if bad < 0 {
		bad = r.Status
	}
	for _, p := range []struct {
		n    int64
		name string
	}{{bad, "non-2xx"}, {r.Connect, "connect"}, {r.Read, "read"}, {r.Write, "write"}, {r.Timeout, "timeout"}} {
		if p.n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", p.n, p.name))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// wrkRun is one wrk process; stop ends it early (SIGINT makes wrk print its
// summary as if the duration had run out).
type wrkRun struct {
	cmd    *exec.Cmd
	out    bytes.Buffer
	done   chan error
	script string // temp file
	name   string // the script's name in bench/keterbench, for the report
}

// startWrk starts wrk with -t2 and the given connections against url, with
// Host: host when host is set and any extra headers. count selects the
// script that counts non-2xx responses (slower for wrk, so not used for
// throughput).
func startWrk(ctx context.Context, conns int, dur time.Duration, host, url string, count bool, headers ...string) (*wrkRun, error) {
	script, name := summaryScript, "wrk-summary.lua"
	if count {
		script, name = countScript, "wrk-count.lua"
	}
	f, err := os.CreateTemp("", "keterbench-*.lua")
	if err != nil {
		return nil, fmt.Errorf("writing wrk script: %w", err)
	}
	f.WriteString(script)
	f.Close()
	args := []string{"-t2", "-c" + strconv.Itoa(conns), "-d" + strconv.Itoa(int(dur.Seconds())) + "s", "--timeout", "5s", "-s", f.Name()}
	if host != "" {
		args = append(args, "-H", "Host: "+host)
	}
	for _, h := range headers {
		args = append(args, "-H", h)
	}
	args = append(args, url)
	w := &wrkRun{cmd: exec.CommandContext(ctx, "wrk", args...), done: make(chan error, 1), script: f.Name(), name: name}
	w.cmd.Stdout, w.cmd.Stderr = &w.out, &w.out
	if err := w.cmd.Start(); err != nil {
		os.Remove(f.Name())
		return nil, fmt.Errorf("starting wrk: %w", err)
	}
	go func() { w.done <- w.cmd.Wait() }()
	return w, nil
}

// stop asks wrk to finish now.
func (w *wrkRun) stop() { w.cmd.Process.Signal(syscall.SIGINT) }

// wait returns wrk's summary once it exits.
func (w *wrkRun) wait() (wrkResult, error) {
	err := <-w.done
	defer os.Remove(w.script)
	var quoted []string
	for _, a := range w.cmd.Args[1:] {
		if strings.ContainsAny(a, " :") && !strings.HasPrefix(a, "http") {
			a = "'" + a + "'"
		}
		quoted = append(quoted, a)
	}
	cmdline := "wrk " + strings.Join(quoted, " ")
	cmdline = strings.Replace(cmdline, w.script, "bench/keterbench/"+w.name, 1)
	if err != nil {
		return wrkResult{}, fmt.Errorf("running %s: %w: %s", cmdline, err, w.out.String())
	}
	for _, line := range strings.Split(w.out.String(), "\n") {
		if !strings.HasPrefix(line, "KETERBENCH ") {
			continue
		}
		f := parseLogfmt(strings.TrimPrefix(line, "KETERBENCH "))
		n := func(k string) int64 { v, _ := strconv.ParseInt(f[k], 10, 64); return v }
		us := func(k string) time.Duration { return time.Duration(n(k)) * time.Microsecond }
		return wrkResult{
			Requests: n("requests"), Duration: us("duration_us"), Non2xx: n("non2xx"),
			Status: n("status"), Connect: n("connect"), Read: n("read"), Write: n("write"), Timeout: n("timeout"),
			P50: us("p50_us"), P90: us("p90_us"), P99: us("p99_us"), Max: us("max_us"), Command: cmdline,
			CPU: map[string]time.Duration{"wrk": w.cmd.ProcessState.UserTime() + w.cmd.ProcessState.SystemTime()},
		}, nil
	}
	return wrkResult{}, fmt.Errorf("%s printed no summary: %s", cmdline, w.out.String())
}

// runWrk runs wrk for dur and returns its summary.
func runWrk(ctx context.Context, conns int, dur time.Duration, host, url string, count bool) (wrkResult, error) {
	w, err := startWrk(ctx, conns, dur, host, url, count)
	if err != nil {
		return wrkResult{}, err
	}
	return w.wait()
}
