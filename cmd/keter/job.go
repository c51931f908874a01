package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/keter-systemd/keter/app"
)

func cmdJob(ctx context.Context, args []string) int {
	fs := newFlags("job", "[-c CONFIG] run APP JOB",
		"run: starts JOB, one of APP's scheduled stanzas (its name:, default\nscheduled-INDEX), now, in the live version, as its timer would. Refused\nwhile a run of it is under way (systemd never runs a job twice at once).\nIts output is in 'keter logs APP' (KETER_JOB=JOB); 'keter status APP'\nshows its result.")
	cfgPath := configFlag(fs)
	pos, code, ok := parseArgs(fs, args, 3, 3)
	if !ok {
		return code
	}
	if pos[0] != "run" {
		return usageError(fs, fmt.Sprintf("want run, not %q", pos[0]))
	}
	_, c, err := connect(*cfgPath)
	if err != nil {
		return fail("%v", err)
	}
	res, err := c.RunJob(ctx, pos[1], pos[2])
	if err != nil {
		return fail("%v", err)
	}
	fmt.Printf("%s: job %s started (%s); follow it with: keter logs %s -f\n", res.App, res.Job, res.Unit, res.App)
	return exitOK
}

// printJobs is keter status APP's part for scheduled jobs.
func printJobs(w io.Writer, jobs []app.JobStatus) {
	if len(jobs) == 0 {
		return
	}
	fmt.Fprintln(w, "jobs:")
	for _, j := range jobs {
		sched := j.Schedule
		if j.OnCalendar != j.Schedule {
			sched += " (" + j.OnCalendar + ")"
		}
		fmt.Fprintf(w, "  %s  %s\n", j.Name, sched)
		last := "never ran"
		switch {
		case j.State == "active":
			last = "running since " + stamp(j.LastStart)
		case j.LastResult != "":
			how := fmt.Sprintf("exit %d", j.ExitStatus)
			if j.Signal {
				how = fmt.Sprintf("signal %d", j.ExitStatus)
			}
			last = fmt.Sprintf("%s, %s (%s), took %s", stamp(j.LastStart), j.LastResult, how, j.Duration.Round(time.Millisecond))
		}
		next := "none"
		if !j.Next.IsZero() {
			next = stamp(j.Next)
		}
		fmt.Fprintf(w, "    last: %s; next: %s\n", last, next)
		if j.Error != "" {
			fmt.Fprintf(w, "    error: %s\n", j.Error)
		}
	}
}

func stamp(t time.Time) string { return t.Local().Format(time.DateTime) }
