package dbus

import (
	"testing"
	"time"

	godbus "github.com/godbus/dbus/v5"
)

func removedSignal(id uint32, result string) *godbus.Signal {
	return &godbus.Signal{Name: jobRemoved, Body: []any{id, godbus.ObjectPath("/org/freedesktop/systemd1/job/1"), "x.service", result}}
}

// TestJobResults: a result reaches its waiter whether it comes before or
// after the wait begins, a waiter gets only its own job's result, and
// results no one claims are pruned.
func TestJobResults(t *testing.T) {
	t.Run("after the wait", func(t *testing.T) {
		r := newJobResults()
		ch := r.wait(7)
		r.removed(8, "failed", time.Now())
		r.removed(7, "done", time.Now())
		if got := <-ch; got != "done" {
			t.Errorf("result %q, want done", got)
		}
		if len(r.waiters) != 0 {
			t.Errorf("%d waiters left", len(r.waiters))
		}
	})
	t.Run("before the wait", func(t *testing.T) {
		// The signal is read before the submission's reply.
		r := newJobResults()
		r.removed(7, "failed", time.Now())
		select {
		case got := <-r.wait(7):
			if got != "failed" {
				t.Errorf("result %q, want failed", got)
			}
		default:
			t.Fatal("a result that came first was not handed to its waiter")
		}
		if len(r.early) != 0 {
			t.Errorf("%d early results left", len(r.early))
		}
	})
	t.Run("forgotten waiter", func(t *testing.T) {
		r := newJobResults()
		r.wait(7)
		r.forget(7)
		r.removed(7, "done", time.Now())
		if len(r.waiters) != 0 {
			t.Errorf("%d waiters left", len(r.waiters))
		}
	})
	t.Run("unclaimed results pruned", func(t *testing.T) {
		r := newJobResults()
		t0 := time.Now()
		r.removed(1, "done", t0)
		r.removed(2, "done", t0.Add(2*earlyFor))
		if _, ok := r.early[1]; ok {
			t.Error("a result older than earlyFor was kept")
		}
		if _, ok := r.early[2]; !ok {
			t.Error("a fresh result was pruned")
		}
	})
}

// TestJobResultsTake: take takes JobRemoved signals apart and skips
// every other signal.
func TestJobResultsTake(t *testing.T) {
	r := newJobResults()
	ch := r.wait(42)
	r.take(&godbus.Signal{Name: propsChanged, Body: []any{uint32(42)}})
	r.take(&godbus.Signal{Name: jobRemoved, Body: []any{uint32(42)}}) // short body
	select {
	case got := <-ch:
		t.Fatalf("a result %q from a signal that carries none", got)
	default:
	}
	r.take(removedSignal(42, "timeout"))
	select {
	case got := <-ch:
		if got != "timeout" {
			t.Errorf("result %q, want timeout", got)
		}
	default:
		t.Fatal("no result after the JobRemoved signal")
	}
}
