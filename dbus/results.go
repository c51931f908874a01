package dbus

import (
	"sync"
	"time"

	godbus "github.com/godbus/dbus/v5"
)

const jobRemoved = "org.freedesktop.systemd1.Manager.JobRemoved"

// earlyFor is how long a result no one waits for yet is kept: a
// submission's reply can be read after its job's JobRemoved, and the
// results of jobs others submitted are never claimed.
const earlyFor = time.Minute

// jobResults hands each job's result (systemd's JobRemoved signal) to the
// caller that submitted it. keter submits jobs to go-systemd without a
// channel and follows results here: go-systemd's own tracking holds one
// lock from a job's submission until systemd has answered it and needs
// that lock for every result it hands out, so with hundreds of deploys
// submitting at once results queued behind submissions (1000 bundles
// dropped at once: 431 deploys waiting for results of units systemd had
// started, its signal reader parked on that lock). Here a submission
// holds no lock while it waits for systemd, and a result is one map
// operation away from its waiter.
type jobResults struct {
	mu      sync.Mutex
	waiters map[uint32]chan string
	early   map[uint32]earlyResult
	pruned  time.Time
}

type earlyResult struct {
	result string
	at     time.Time
}

func newJobResults() *jobResults {
	return &jobResults{waiters: map[uint32]chan string{}, early: map[uint32]earlyResult{}}
}

// wait returns a channel that gets job id's result, at once when it came
// before the call.
func (r *jobResults) wait(id uint32) <-chan string {
	ch := make(chan string, 1)
	r.mu.Lock()
	defer r.mu.Unlock()
	if e, ok := r.early[id]; ok {
		delete(r.early, id)
		ch <- e.result
		return ch
	}
	r.waiters[id] = ch
	return ch
}

// forget drops the waiter of a job no one waits for any more.
func (r *jobResults) forget(id uint32) {
	r.mu.Lock()
	delete(r.waiters, id)
	r.mu.Unlock()
}

// removed records that job id ended with result.
func (r *jobResults) removed(id uint32, result string, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if ch, ok := r.waiters[id]; ok {
		delete(r.waiters, id)
		ch <- result // buffered, and the only send
		return
	}
	r.early[id] = earlyResult{result: result, at: now}
	if now.Sub(r.pruned) < earlyFor {
		return
	}
	r.pruned = now
	for k, e := range r.early {
		if now.Sub(e.at) > earlyFor {
			delete(r.early, k)
		}
	}
}

// take records a JobRemoved signal's result and ignores any other signal.
func (r *jobResults) take(sig *godbus.Signal) {
	if sig.Name != jobRemoved || len(sig.Body) < 4 {
		return
	}
	id, ok := sig.Body[0].(uint32)
	result, _ := sig.Body[3].(string)
	if ok {
		r.removed(id, result, time.Now())
	}
}
