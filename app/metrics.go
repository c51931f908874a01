package app

import (
	"sync"
	"time"
)

// DurationBounds are the upper bounds, in seconds, of the deploy duration
// histogram: a deploy is dominated by the app's own start-up.
var DurationBounds = []float64{0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300}

// Deploy results as counted and reported.
const (
	ResultLive       = "live"
	ResultFailed     = "failed"
	ResultSuperseded = "superseded"
)

// Metrics is a snapshot of the core's counters since keter started.
type Metrics struct {
	// Deploys counts finished deploys by result (live, failed,
	// superseded); an unchanged bundle is not a deploy.
	Deploys map[string]uint64
	// Duration is the histogram of those deploys' durations.
	Duration Histogram
}

// Histogram has cumulative counts per bound, as Prometheus wants them.
type Histogram struct {
	Bounds []float64
	Counts []uint64 // Counts[i] is the number of observations <= Bounds[i]
	Count  uint64
	Sum    float64 // seconds
}

// metrics is the Manager's counter set; its zero value is ready.
type metrics struct {
	mu      sync.Mutex
	deploys map[string]uint64
	buckets []uint64 // not cumulative
	count   uint64
	sum     float64
}

func (c *metrics) observe(result string, d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.deploys == nil {
		c.deploys = map[string]uint64{}
		c.buckets = make([]uint64, len(DurationBounds))
	}
	c.deploys[result]++
	s := d.Seconds()
	for i, b := range DurationBounds {
		if s <= b {
			c.buckets[i]++
			break
		}
	}
	c.count++
	c.sum += s
}

// Metrics returns the deploy counters; every result is present, zero or not.
func (m *Manager) Metrics() Metrics {
	c := &m.metrics
	c.mu.Lock()
	defer c.mu.Unlock()
	out := Metrics{
		Deploys:  map[string]uint64{ResultLive: 0, ResultFailed: 0, ResultSuperseded: 0},
		Duration: Histogram{Bounds: DurationBounds, Counts: make([]uint64, len(DurationBounds)), Count: c.count, Sum: c.sum},
	}
	for r, n := range c.deploys {
		out.Deploys[r] = n
	}
	var cum uint64
	for i := range DurationBounds {
		if c.buckets != nil {
			cum += c.buckets[i]
		}
		out.Duration.Counts[i] = cum
	}
	return out
}
