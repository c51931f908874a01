package usage

import (
	"time"

	"github.com/keter-systemd/keter/unitgen"
)

// Figures are figures under the names the API shows them by; nil where
// systemd does not count one.
type Figures struct {
	MemoryBytes  *uint64 `json:"memory_bytes,omitempty"`
	CPUNSec      *uint64 `json:"cpu_nsec,omitempty"`
	Tasks        *uint64 `json:"tasks,omitempty"`
	IOReadBytes  *uint64 `json:"io_read_bytes,omitempty"`
	IOWriteBytes *uint64 `json:"io_write_bytes,omitempty"`
	IPInBytes    *uint64 `json:"ip_in_bytes,omitempty"`
	IPOutBytes   *uint64 `json:"ip_out_bytes,omitempty"`
}

func (f *Figures) field(fig unitgen.Figure) **uint64 {
	return [unitgen.NumFigures]**uint64{
		unitgen.Memory: &f.MemoryBytes, unitgen.CPU: &f.CPUNSec, unitgen.Tasks: &f.Tasks,
		unitgen.IORead: &f.IOReadBytes, unitgen.IOWrite: &f.IOWriteBytes,
		unitgen.IPIn: &f.IPInBytes, unitgen.IPOut: &f.IPOutBytes,
	}[fig]
}

// FiguresOf converts systemd's figures; Unset ones stay nil.
func FiguresOf(u unitgen.Figures) Figures {
	var f Figures
	for fig, v := range u {
		if v != unitgen.Unset {
			*f.field(unitgen.Figure(fig)) = &v
		}
	}
	return f
}

// Get returns one figure and whether it is counted.
func (f Figures) Get(fig unitgen.Figure) (uint64, bool) {
	p := *f.field(fig)
	if p == nil {
		return 0, false
	}
	return *p, true
}

// Unit is what systemd counts for one unit's current (or last) run: as
// `systemctl show` prints it, from the run's start.
type Unit struct {
	Since time.Time `json:"since,omitzero"` // when the run's main process started
	Figures
}

// UnitOf is a unit's usage as List reported it.
func UnitOf(u unitgen.Usage) Unit {
	return Unit{Since: u.StartedAt(), Figures: FiguresOf(u.Figures)}
}

// Stanza is one stanza of an app: memory and tasks now, summed over its
// units (old versions still draining included); CPU, IO and IP are keter's
// running totals since Since, across versions, restarts and crashes.
type Stanza struct {
	Stanza string    `json:"stanza"`
	Since  time.Time `json:"since"` // keter's start, or the stanza's first run after it
	Figures
}
