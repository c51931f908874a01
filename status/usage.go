package status

import (
	"bufio"
	"context"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/keter-systemd/keter/unitgen"
	"github.com/keter-systemd/keter/usage"
)

// Usage keeps what apps use; package usage's Tracker implements it.
type Usage interface {
	// Observe takes a list of every app unit, read at listedAt, and
	// returns the totals of every app and stanza.
	Observe(ctx context.Context, list []unitgen.Status, listedAt time.Time) map[usage.Key]usage.Stanza
}

// stanzaUsage is every app's stanzas, sorted, by app: grouped in one
// pass, since looking each app up in the totals was a pass over every
// stanza per app (a third of a status request's CPU at 1000 apps).
func stanzaUsage(totals map[usage.Key]usage.Stanza) map[string][]usage.Stanza {
	out := map[string][]usage.Stanza{}
	for k, s := range totals {
		out[k.App] = append(out[k.App], s)
	}
	for _, ss := range out {
		sort.Slice(ss, func(i, j int) bool { return ss[i].Stanza < ss[j].Stanza })
	}
	return out
}

// unitUsage is a unit's figures, nil when it has not run.
func unitUsage(u unitgen.Status) *usage.Unit {
	if u.Usage.Started == 0 {
		return nil
	}
	x := usage.UnitOf(u.Usage)
	return &x
}

// usageSeries are the /metrics families, by figure; CPU is in seconds.
var usageSeries = []struct {
	name, typ, help string
	fig             unitgen.Figure
}{
	{"keter_app_memory_bytes", "gauge", "Memory the app's units use now (systemd's MemoryCurrent), summed per stanza.", unitgen.Memory},
	{"keter_app_tasks", "gauge", "Tasks (processes and threads) of the app's units now, summed per stanza.", unitgen.Tasks},
	{"keter_app_cpu_seconds_total", "counter", "CPU time the app's units used since keter started, across versions, restarts and crashes.", unitgen.CPU},
	{"keter_app_io_read_bytes_total", "counter", "Bytes the app's units read from block devices since keter started.", unitgen.IORead},
	{"keter_app_io_written_bytes_total", "counter", "Bytes the app's units wrote to block devices since keter started.", unitgen.IOWrite},
	{"keter_app_ip_receive_bytes_total", "counter", "IP bytes the app's units received since keter started.", unitgen.IPIn},
	{"keter_app_ip_transmit_bytes_total", "counter", "IP bytes the app's units sent since keter started.", unitgen.IPOut},
}

// writeUsage writes the per-stanza usage series of apps. A figure systemd
// does not count on this host has no series.
func writeUsage(b *bufio.Writer, apps []App, header func(name, typ, help string)) {
	for _, sr := range usageSeries {
		headed := false
		for _, a := range apps {
			for _, s := range a.Usage {
				v, ok := s.Get(sr.fig)
				if !ok {
					continue
				}
				if !headed {
					header(sr.name, sr.typ, sr.help)
					headed = true
				}
				val := fmt.Sprint(v)
				if sr.fig == unitgen.CPU {
					val = float(float64(v) / 1e9)
				}
				fmt.Fprintf(b, "%s{app=%q,stanza=%q} %s\n", sr.name, a.Name, s.Stanza, val)
			}
		}
	}
	headed := false
	for _, a := range apps {
		for _, s := range a.Usage {
			if !headed {
				header("keter_app_usage_start_time_seconds", "gauge", "Unix time since which the keter_app_*_total series of the app's stanza count.")
				headed = true
			}
			fmt.Fprintf(b, "keter_app_usage_start_time_seconds{app=%q,stanza=%q} %s\n", a.Name, s.Stanza, strconv.FormatFloat(float64(s.Since.UnixMilli())/1000, 'f', -1, 64))
		}
	}
}

// Bytes formats a byte count for people, in binary units.
func Bytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}

// CPU formats nanoseconds of CPU time for people.
func CPU(ns uint64) string {
	return fmt.Sprintf("%.2f s", float64(ns)/1e9)
}
