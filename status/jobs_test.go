package status

import (
	"bufio"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/keter-systemd/keter/app"
)

func TestWriteJobs(t *testing.T) {
	start, next := time.Unix(1_800_000_000, 0), time.Unix(1_800_000_060, 0)
	apps := []App{{AppStatus: app.AppStatus{Name: "shop", Jobs: []app.JobStatus{
		{Name: "ok", LastStart: start, LastResult: "success", Next: next},
		{Name: "bad", LastStart: start, LastResult: "exit-code", ExitStatus: 3, Next: next},
		{Name: "never", Next: next},
	}}}}
	var sb strings.Builder
	b := bufio.NewWriter(&sb)
	writeJobs(b, apps, func(name, typ, help string) { fmt.Fprintf(b, "# TYPE %s %s\n", name, typ) })
	b.Flush()
	got := sb.String()
	for _, want := range []string{
		`keter_job_last_run_timestamp_seconds{app="shop",job="ok"} 1800000000`,
		`keter_job_last_success{app="shop",job="ok"} 1`,
		`keter_job_last_success{app="shop",job="bad"} 0`,
		`keter_job_next_run_timestamp_seconds{app="shop",job="never"} 1800000060`,
	} {
		if !strings.Contains(got, want+"\n") {
			t.Errorf("metrics lack %s:\n%s", want, got)
		}
	}
	for _, absent := range []string{`keter_job_last_run_timestamp_seconds{app="shop",job="never"}`, `keter_job_last_success{app="shop",job="never"}`} {
		if strings.Contains(got, absent) {
			t.Errorf("a job that never ran has %s:\n%s", absent, got)
		}
	}
}
