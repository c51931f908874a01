package main

import (
	"encoding/json"
	"log/slog"
	"os"
	"runtime"
	"runtime/pprof"
)

// profileCPU writes a CPU profile of the whole run to $KETER_CPUPROFILE
// and a heap profile at its end to $KETER_MEMPROFILE (its goroutines to
// the same path + ".goroutines", its runtime.MemStats to + ".memstats"),
// when set
// (diagnosis only: keterbench passes them with -keter-env); the returned
// func ends them.
func profileCPU(log *slog.Logger) func() {
	heap := func() {
		if path := os.Getenv("KETER_MEMPROFILE"); path != "" {
			for name, file := range map[string]string{"heap": path, "goroutine": path + ".goroutines"} {
				if f, err := os.Create(file); err == nil {
					pprof.Lookup(name).WriteTo(f, 0)
					f.Close()
				}
			}
			// Where the memory beyond the heap goes (stacks, GC metadata).
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			if b, err := json.MarshalIndent(ms, "", " "); err == nil {
				os.WriteFile(path+".memstats", b, 0o644)
			}
		}
	}
	path := os.Getenv("KETER_CPUPROFILE")
	if path == "" {
		return heap
	}
	f, err := os.Create(path)
	if err == nil {
		err = pprof.StartCPUProfile(f)
	}
	if err != nil {
		log.Warn("not profiling", "path", path, "err", err)
		return func() {}
	}
	return func() { pprof.StopCPUProfile(); f.Close(); heap() }
}
