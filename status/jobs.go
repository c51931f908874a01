package status

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/keter-systemd/keter/app"
	"github.com/keter-systemd/keter/bundle"
)

// jobCore is the core's part for scheduled jobs; a Core without it shows
// no jobs.
type jobCore interface {
	Jobs(ctx context.Context) map[string][]app.JobStatus
	RunJob(ctx context.Context, app, job string) (string, error)
}

// jobs reads every live app's jobs.
func (s *Server) jobs(ctx context.Context) map[string][]app.JobStatus {
	jc, ok := s.o.Core.(jobCore)
	if !ok {
		return nil
	}
	return jc.Jobs(ctx)
}

// JobRun is the answer to a job started by hand.
type JobRun struct {
	App  string `json:"app"`
	Job  string `json:"job"`
	Unit string `json:"unit"`
}

// runJob starts a job now: POST /api/apps/{name}/jobs/{job}/run.
func (s *Server) runJob(w http.ResponseWriter, r *http.Request) {
	name, job := r.PathValue("name"), r.PathValue("job")
	if err := bundle.ValidAppName(name); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	if err := bundle.ValidJobName(job); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	jc, ok := s.o.Core.(jobCore)
	if !ok {
		writeError(w, http.StatusNotImplemented, errors.New("this keter runs no scheduled jobs"))
		return
	}
	unit, err := jc.RunJob(r.Context(), name, job)
	switch {
	case errors.Is(err, app.ErrUnknownApp), errors.Is(err, app.ErrNoJob):
		writeError(w, http.StatusNotFound, err)
	case errors.Is(err, app.ErrJobRunning):
		writeError(w, http.StatusConflict, err)
	case err != nil:
		writeError(w, http.StatusInternalServerError, err)
	default:
		writeJSON(w, http.StatusOK, JobRun{App: name, Job: job, Unit: unit})
	}
}

// RunJob starts an app's job now.
func (c *Client) RunJob(ctx context.Context, name, job string) (JobRun, error) {
	var out JobRun
	err := c.doBody(ctx, http.MethodPost, "/api/apps/"+name+"/jobs/"+job+"/run", nil, &out)
	return out, err
}

// writeJobs writes the keter_job_* series.
func writeJobs(b *bufio.Writer, apps []App, header func(name, typ, help string)) {
	header("keter_job_last_run_timestamp_seconds", "gauge", "When each scheduled job's last run started (Unix time); jobs that never ran have no series.")
	for _, a := range apps {
		for _, j := range a.Jobs {
			if !j.LastStart.IsZero() {
				fmt.Fprintf(b, "keter_job_last_run_timestamp_seconds{app=%q,job=%q} %d\n", a.Name, j.Name, j.LastStart.Unix())
			}
		}
	}
	header("keter_job_last_success", "gauge", "1 when each scheduled job's last finished run succeeded, else 0; jobs that never finished a run have no series.")
	for _, a := range apps {
		for _, j := range a.Jobs {
			if j.LastResult != "" {
				ok := 0
				if j.Succeeded() {
					ok = 1
				}
				fmt.Fprintf(b, "keter_job_last_success{app=%q,job=%q} %d\n", a.Name, j.Name, ok)
			}
		}
	}
	header("keter_job_next_run_timestamp_seconds", "gauge", "When each scheduled job runs next (Unix time).")
	for _, a := range apps {
		for _, j := range a.Jobs {
			if !j.Next.IsZero() {
				fmt.Fprintf(b, "keter_job_next_run_timestamp_seconds{app=%q,job=%q} %d\n", a.Name, j.Name, j.Next.Unix())
			}
		}
	}
}
