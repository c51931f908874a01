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
}

func startCPU(ctx context.Context, units map[string]string) (*cpuMeter, error) {
	m := &cpuMeter{tasks: map[string][]string{}, start: map[string]time.Duration{}}
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

func (m *cpuMeter) stop() map[string]time.Duration {
	out := map[string]time.Duration{}
	for name, ts := range m.tasks {
		out[name] = tasksCPU(ts) - m.start[name]
	}
	return out
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
	return fmt.Sprintf("%s (sum %.1f) µs a request", strings.Join(parts, ", "), total)
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
