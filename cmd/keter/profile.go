package main

import (
	"log/slog"
	"os"
	"runtime/pprof"
)

// profileCPU writes a CPU profile of the whole run to $KETER_CPUPROFILE,
// when set (diagnosis only: `make bench` passes it with -keter-env); the
// returned func ends it.
func profileCPU(log *slog.Logger) func() {
	path := os.Getenv("KETER_CPUPROFILE")
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err == nil {
		err = pprof.StartCPUProfile(f)
	}
	if err != nil {
		log.Warn("not profiling", "path", path, "err", err)
		return func() {}
	}
	return func() { pprof.StopCPUProfile(); f.Close() }
}
