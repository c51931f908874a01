package unitgen

import "time"

// Figure is one thing systemd counts for a unit.
type Figure int

// The figures keter reads, with their systemd property names.
const (
	Memory  Figure = iota // bytes in use now (MemoryCurrent)
	CPU                   // nanoseconds of CPU time (CPUUsageNSec)
	Tasks                 // tasks now (TasksCurrent)
	IORead                // bytes read from block devices (IOReadBytes)
	IOWrite               // bytes written to block devices (IOWriteBytes)
	IPIn                  // IP bytes received (IPIngressBytes)
	IPOut                 // IP bytes sent (IPEgressBytes)
	NumFigures
)

var figureNames = [NumFigures]string{"memory", "cpu", "tasks", "io_read", "io_write", "ip_in", "ip_out"}

func (f Figure) String() string { return figureNames[f] }

// Counter reports whether f only grows during a run; memory and tasks are
// gauges.
func (f Figure) Counter() bool { return f != Memory && f != Tasks }

// Unset marks a figure that is not counted, as systemd does (UINT64_MAX).
const Unset = ^uint64(0)

// Figures holds one value per Figure; Unset where there is none.
type Figures [NumFigures]uint64

// NoFigures has every figure Unset.
func NoFigures() Figures {
	var f Figures
	for i := range f {
		f[i] = Unset
	}
	return f
}

// Usage is what systemd counted for a unit's current or last run. systemd
// starts every counter again at each start of the unit, restarts included.
type Usage struct {
	// Started is when the run's main process started, in µs since the
	// epoch (ExecMainStartTimestamp); it tells runs apart. 0: none yet.
	Started uint64
	Figures Figures
}

// StartedAt is Started as a time; zero when there is no run.
func (u Usage) StartedAt() time.Time {
	if u.Started == 0 {
		return time.Time{}
	}
	return time.UnixMicro(int64(u.Started))
}

// Final is systemd's account of one finished run of a unit: its
// "Consumed …" journal record (memory and tasks are never in it, nor what
// systemd could not count). systemd may log it twice for one run.
type Final struct {
	Unit       string
	Invocation string // the run's InvocationID
	At         time.Time
	Figures    Figures
}
