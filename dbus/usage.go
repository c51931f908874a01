package dbus

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	sddbus "github.com/coreos/go-systemd/v22/dbus"

	"github.com/keter-systemd/keter/unitgen"
)

// usageProps are the Service properties holding each figure.
var usageProps = [unitgen.NumFigures]string{
	unitgen.Memory: "MemoryCurrent", unitgen.CPU: "CPUUsageNSec", unitgen.Tasks: "TasksCurrent",
	unitgen.IORead: "IOReadBytes", unitgen.IOWrite: "IOWriteBytes",
	unitgen.IPIn: "IPIngressBytes", unitgen.IPOut: "IPEgressBytes",
}

// hybridRoot is where a hybrid (v1 + v2) host mounts the cgroup v2 tree.
var hybridRoot = "/sys/fs/cgroup/unified"

// usageOf reads a unit's figures from its Service properties, as List
// already fetches them. systemd 252 in hybrid mode reports no CPU time
// when cpuacct is not mounted together with cpu (it never creates the
// cpuacct cgroup); the kernel still counts it in the unit's cgroup v2
// cpu.stat, which is what systemd itself reads on a cgroup v2 host.
func usageOf(props map[string]any) unitgen.Usage {
	u := unitgen.Usage{Figures: unitgen.NoFigures()}
	u.Started, _ = props["ExecMainStartTimestamp"].(uint64)
	for f, name := range usageProps {
		if v, ok := props[name].(uint64); ok {
			u.Figures[f] = v
		}
	}
	if cg, _ := props["ControlGroup"].(string); u.Figures[unitgen.CPU] == unitgen.Unset && cg != "" {
		if ns, ok := cgroupCPU(hybridRoot + cg); ok {
			u.Figures[unitgen.CPU] = ns
		}
	}
	return u
}

// cgroupCPU reads usage_usec from a cgroup v2 folder's cpu.stat.
func cgroupCPU(dir string) (uint64, bool) {
	b, err := os.ReadFile(dir + "/cpu.stat")
	if err != nil {
		return 0, false
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "usage_usec "); ok {
			us, err := strconv.ParseUint(v, 10, 64)
			return us * 1000, err == nil
		}
	}
	return 0, false
}

// RunID names a unit's current run: its InvocationID, which systemd's
// journal records carry, and the ExecMainStartTimestamp that List reports
// as Usage.Started. The timestamp is read after the ID: systemd changes
// both in one step, so an ID read before a timestamp equal to List's
// belongs to that run.
func (c *Client) RunID(ctx context.Context, unit string) (invocation string, started uint64, err error) {
	err = c.do(ctx, func(conn *sddbus.Conn) error {
		p, err := conn.GetUnitPropertyContext(ctx, unit, "InvocationID")
		if err != nil {
			return err
		}
		id, ok := p.Value.Value().([]byte)
		if !ok {
			return fmt.Errorf("InvocationID is %s, not bytes", p.Value.Signature())
		}
		invocation = hex.EncodeToString(id)
		p, err = conn.GetServicePropertyContext(ctx, unit, "ExecMainStartTimestamp")
		if err != nil {
			return err
		}
		started, _ = p.Value.Value().(uint64)
		return nil
	})
	if err != nil {
		return "", 0, fmt.Errorf("reading run of unit %s: %w", unit, err)
	}
	return invocation, started, nil
}

// resourcesMessage is the MESSAGE_ID of systemd's "Consumed …" record
// (SD_MESSAGE_UNIT_RESOURCES), logged when a unit's run ends.
const resourcesMessage = "ae8f7b866b0347b9af31fe1c80b127c0"

// recordFields are the journal fields of each figure in that record.
var recordFields = map[string]unitgen.Figure{
	"CPU_USAGE_NSEC": unitgen.CPU, "IO_METRIC_READ_BYTES": unitgen.IORead, "IO_METRIC_WRITE_BYTES": unitgen.IOWrite,
	"IP_METRIC_INGRESS_BYTES": unitgen.IPIn, "IP_METRIC_EGRESS_BYTES": unitgen.IPOut,
}

// Finals reads systemd's final accounts of runs of units whose name starts
// with prefix, logged after cursor (or, with no cursor, since since). It
// returns them oldest first with the cursor to pass next time.
func (c *Client) Finals(ctx context.Context, prefix, cursor string, since time.Time) ([]unitgen.Final, string, error) {
	fields := []string{"UNIT", "INVOCATION_ID"}
	for f := range recordFields {
		fields = append(fields, f)
	}
	args := []string{"-q", "--no-pager", "-o", "json", "--output-fields=" + strings.Join(fields, ","),
		"MESSAGE_ID=" + resourcesMessage, "_PID=1"}
	if cursor != "" {
		args = append(args, "--after-cursor="+cursor)
	} else {
		args = append(args, fmt.Sprintf("--since=@%d.%06d", since.Unix(), since.Nanosecond()/1000))
	}
	cmd := exec.CommandContext(ctx, "journalctl", args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, cursor, fmt.Errorf("reading resource records from the journal: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	var finals []unitgen.Final
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var rec map[string]any
		if json.Unmarshal(sc.Bytes(), &rec) != nil {
			continue
		}
		if cur, ok := rec["__CURSOR"].(string); ok {
			cursor = cur
		}
		if f, ok := parseFinal(rec); ok && strings.HasPrefix(f.Unit, prefix) {
			finals = append(finals, f)
		}
	}
	return finals, cursor, nil
}

// parseFinal reads one record; journalctl gives every field as a string
// (an array when repeated, which a record of ours never is).
func parseFinal(rec map[string]any) (unitgen.Final, bool) {
	str := func(k string) string { s, _ := rec[k].(string); return s }
	f := unitgen.Final{Unit: str("UNIT"), Invocation: str("INVOCATION_ID"), Figures: unitgen.NoFigures()}
	if f.Unit == "" || f.Invocation == "" {
		return f, false
	}
	if us, err := strconv.ParseInt(str("__REALTIME_TIMESTAMP"), 10, 64); err == nil {
		f.At = time.UnixMicro(us)
	}
	for k, fig := range recordFields {
		if v, err := strconv.ParseUint(str(k), 10, 64); err == nil {
			f.Figures[fig] = v
		}
	}
	return f, true
}
