package main

import (
	"log/slog"
	"os"
	"runtime/pprof"
)

// profileCPU writes a CPU profile of the whole run to $KETER_CPUPROFILE
// and a heap profile at its end to $KETER_MEMPROFILE (its goroutines to
// the same path + ".goroutines"), when set
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
