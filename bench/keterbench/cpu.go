package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// CPU per request: requests per second under a saturated 2-core machine
// mostly measure how the scheduler shares the cores at the moment; the
// CPU each party spent per request served says which one does more work.

// unitTasks is every thread of the unit's main process and of its
// children (nginx's master and workers, an app).
func unitTasks(ctx context.Context, unit string) ([]string, error) {
	main, err := unitPID(ctx, unit)
	if err != nil {
		return nil, err
	}
	pids := []int{main}
	procs, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, not ")".
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		if len(f) > 1 && f[1] == strconv.Itoa(main) {
			pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
			pids = append(pids, pid)
		}
	}
	var tasks []string
	for _, pid := range pids {
		ts, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/[0-9]*/schedstat", pid))
		tasks = append(tasks, ts...)
	}
	return tasks, nil
}

// tasksCPU is the time on a CPU of the threads (schedstat's first field,
// in ns); a thread that is gone counts for nothing.
func tasksCPU(tasks []string) time.Duration {
	var sum time.Duration
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		f := strings.Fields(string(b))
		if len(f) > 0 {
			ns, _ := strconv.ParseInt(f[0], 10, 64)
			sum += time.Duration(ns)
		}
	}
	return sum
}

// cpuMeter reads the CPU of named parties (each a space-separated list of
// units) around one wrk run.
type cpuMeter struct {
	tasks map[string][]string
	start map[string]time.Duration
	tcp   map[string]int64
}

// tcpCounters are the host's TCP counters (the sandbox shares its network
// namespace, so other work counts too): connections opened (ActiveOpens,
// wrk's and nginx's to its upstream) and segments sent (OutSegs).
func tcpCounters() map[string]int64 {
	b, _ := os.ReadFile("/proc/net/snmp")
	var names []string
	out := map[string]int64{}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) == 0 || f[0] != "Tcp:" {
			continue
		}
		if names == nil {
			names = f
			continue
		}
		for i, v := range f {
			if i < len(names) && (names[i] == "ActiveOpens" || names[i] == "OutSegs") {
				out[names[i]], _ = strconv.ParseInt(v, 10, 64)
			}
		}
	}
	return out
}

func startCPU(ctx context.Context, units map[string]string) (*cpuMeter, error) {
	m := &cpuMeter{tasks: map[string][]string{}, start: map[string]time.Duration{}, tcp: tcpCounters()}
	for name, list := range units {
		for _, unit := range strings.Fields(list) {
			ts, err := unitTasks(ctx, unit)
			if err != nil {
				return nil, err
			}
			m.tasks[name] = append(m.tasks[name], ts...)
		}
		m.start[name] = tasksCPU(m.tasks[name])
	}
	return m, nil
}

func (m *cpuMeter) stop() (map[string]time.Duration, map[string]int64) {
	out := map[string]time.Duration{}
	for name, ts := range m.tasks {
		out[name] = tasksCPU(ts) - m.start[name]
	}
	tcp := tcpCounters()
	for k, v := range m.tcp {
		tcp[k] -= v
	}
	return out, tcp
}

// cpuPerRequest is the median over runs of each party's CPU per request,
// e.g. "nginx 41.2 µs, app 30.1 µs, wrk 22.4 µs a request".
func cpuPerRequest(rs []wrkResult) string {
	per := map[string][]float64{}
	for _, r := range rs {
		for name, d := range r.CPU {
			if r.Requests > 0 {
				per[name] = append(per[name], float64(d.Microseconds())/float64(r.Requests))
			}
		}
	}
	if len(per) == 0 {
		return ""
	}
	names := make([]string, 0, len(per))
	for n := range per {
		names = append(names, n)
	}
	slices.Sort(names)
	var parts []string
	var total float64
	for _, n := range names {
		v := medianF(per[n])
		total += v
		parts = append(parts, fmt.Sprintf("%s %.1f", n, v))
	}
	tcp := map[string][]float64{}
	for _, r := range rs {
		for k, v := range r.TCP {
			tcp[k] = append(tcp[k], float64(v)/float64(max(r.Requests, 1)))
		}
	}
	return fmt.Sprintf("%s (sum %.1f) µs a request; %.4f connections opened, %.2f segments sent a request",
		strings.Join(parts, ", "), total, medianF(tcp["ActiveOpens"]), medianF(tcp["OutSegs"]))
}

// appUnit is the app units keter runs, space-separated (a benchmark
// deploys one app, with one unit per webapp stanza).
func appUnit(ctx context.Context) (string, error) {
	out, err := command(ctx, "systemctl", "list-units", "--plain", "--no-legend", "--state=active", "keter-app-*.service")
	if err != nil {
		return "", err
	}
	var units []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if f := strings.Fields(l); len(f) > 0 {
			units = append(units, f[0])
		}
	}
	if len(units) == 0 {
		return "", fmt.Errorf("no active app unit")
	}
	return strings.Join(units, " "), nil
}

// scheduleAlike puts the processes of unit into the cgroup v1 CPU (and
// blkio) hierarchies' groups where like's main process is. On a hybrid
// host where a unit lands there depends on when systemd realised the cpu
// controller (the apps' CPUAccounting does), and the sandboxes share the
// host's groups: keter's nginx was seen in the root group (its own
// autogroup) in one run and in /system.slice in the next, a plain nginx
// started after the app always in /system.slice, where the scheduler
// shares the cores differently. On a unified (v2) host both are leaves
// of system.slice already: nothing to do.
func scheduleAlike(ctx context.Context, unit, like string) (string, error) {
	want, err := unitPID(ctx, like)
	if err != nil {
		return "", err
	}
	main, err := unitPID(ctx, unit)
	if err != nil {
		return "", err
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", want))
	if err != nil {
		return "", err
	}
	pids := []int{main}
	procs, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, p := range procs {
		st, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		f := strings.Fields(string(st[strings.LastIndexByte(string(st), ')')+1:]))
		if len(f) > 1 && f[1] == strconv.Itoa(main) {
			pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
			pids = append(pids, pid)
		}
	}
	var moved []string
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.SplitN(l, ":", 3)
		if len(f) != 3 || !slices.Contains([]string{"cpu", "cpuacct", "cpu,cpuacct", "blkio"}, f[1]) {
			continue
		}
		procsFile := filepath.Join("/sys/fs/cgroup", f[1], f[2], "cgroup.procs")
		for _, pid := range pids {
			if err := os.WriteFile(procsFile, []byte(strconv.Itoa(pid)), 0o644); err != nil {
				return "", fmt.Errorf("moving %s's process %d to %s: %w", unit, pid, procsFile, err)
			}
		}
		moved = append(moved, f[1]+":"+f[2])
	}
	return strings.Join(moved, " "), nil
}

// scheduleAllAlike is scheduleAlike for each unit, like keter's nginx,
// logging where they went.
func scheduleAllAlike(ctx context.Context, e env, units ...string) error {
	for _, u := range units {
		where, err := scheduleAlike(ctx, u, nginxUnit)
		if err != nil {
			return err
		}
		if where != "" {
			e.logf("  %s scheduled as keter's nginx: %s", u, where)
		}
	}
	return nil
}

// cpuSum is the median over runs of all parties' CPU per request, in µs.
func cpuSum(rs []wrkResult) float64 {
	var per []float64
	for _, r := range rs {
		var d time.Duration
		for _, c := range r.CPU {
			d += c
		}
		if r.Requests > 0 && len(r.CPU) > 1 {
			per = append(per, float64(d.Microseconds())/float64(r.Requests))
		}
	}
	return medianF(per)
}

// workRatio compares the CPU per request of two front doors (nginx, the
// app and wrk together): plain's / keter's is the req/s ratio a machine
// that only did this work would give, whatever else runs on it. Empty
// for results recorded without CPU.
func workRatio(keter, plain []wrkResult) string {
	k, p := cpuSum(keter), cpuSum(plain)
	if k == 0 || p == 0 {
		return ""
	}
	return fmt.Sprintf("; CPU a request (nginx, app, wrk): keter %.1f µs, plain %.1f µs, plain/keter %.3f", k, p, p/k)
}
