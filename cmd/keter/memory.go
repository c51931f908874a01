package main

import (
	"context"
	"os"
	"runtime"
	"runtime/debug"
	"time"
)

// gcPercent is keter's GOGC unless the environment sets one: the heap
// may grow to 1.5 times what is live before a collection, not twice. At
// 100 apps this took keter's RSS from 27.8 to 24.4 MB (BENCHMARKS.md)
// for no measurable CPU: keter's live heap is a few MB.
const gcPercent = 50

func setGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
}

// Heap profiling is off unless asked for (KETER_MEMPROFILE): its bucket
// table alone is 1.4 MB of a Go program's memory, and its pages were part
// of keter's RSS (runtime.MemStats.BuckHashSys at 100 apps). Set before
// main runs, so only what the packages' init allocated can be sampled.
var _ = func() int {
	if os.Getenv("KETER_MEMPROFILE") == "" {
		runtime.MemProfileRate = 0
	}
	return 0
}()

// trimEvery is how often keter hands the memory it no longer uses back
// to the OS.
const trimEvery = 30 * time.Second

// trimMemory returns free heap to the OS every trimEvery. Go's own
// scavenger keeps about a heap goal's worth of freed pages around for
// reuse, which for a daemon that is mostly idle between bursts (status
// requests, the unit cache's reads, a deploy) is several MB of RSS held
// for nothing; a forced collection every 30 s costs a few ms of CPU.
func trimMemory(ctx context.Context) {
	t := time.NewTicker(trimEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			debug.FreeOSMemory()
		}
	}
}
