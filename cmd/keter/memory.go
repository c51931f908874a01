package main

import (
	"context"
	"runtime/debug"
	"time"
)

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
