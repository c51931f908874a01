package fleet

import (
	"fmt"
	"time"
)

// Prefix marks the remote side's protocol lines on its stdout; anything
// else there is ignored.
const Prefix = "keter-remote: "

// Events a host sends.
const (
	EventLocked  = "locked"  // the rollout lock is ours; Live is what runs
	EventBusy    = "busy"    // someone else holds it; Holder says who
	EventWaiting = "waiting" // --wait: waiting for Holder to finish
	EventResult  = "result"  // the outcome of one command
	EventApps    = "apps"    // remote status's answer
)

// Results a command ends with.
const (
	ResultLive      = "live"
	ResultFailed    = "failed"
	ResultUnchanged = "unchanged" // rollback: nothing to bring back here
)

// Holder is who holds an app's rollout lock on a host.
type Holder struct {
	User    string    `json:"user"`
	Machine string    `json:"machine"`
	PID     int       `json:"pid"`
	Rollout string    `json:"rollout"`
	Since   time.Time `json:"since,omitzero"`
}

func (h Holder) String() string {
	s := fmt.Sprintf("%s@%s (pid %d)", h.User, h.Machine, h.PID)
	if !h.Since.IsZero() {
		s += " since " + h.Since.UTC().Format(time.DateTime) + " UTC"
	}
	return s
}

// Version is a version of an app on one host.
type Version struct {
	Version string `json:"version"`
	Digest  string `json:"digest"`
}

// Message is one line a host sends.
type Message struct {
	Event  string   `json:"event"`
	Holder *Holder  `json:"holder,omitempty"`
	Live   *Version `json:"live,omitempty"` // what serves after the step
	Result string   `json:"result,omitempty"`
	// Version is the version the step tried to bring live.
	Version  string       `json:"version,omitempty"`
	Error    string       `json:"error,omitempty"`
	Hint     string       `json:"hint,omitempty"`
	Log      []string     `json:"log,omitempty"`
	Warnings []string     `json:"warnings,omitempty"`
	Apps     []AppVersion `json:"apps,omitempty"`
}

// AppVersion is one app as remote status reports it.
type AppVersion struct {
	Name        string `json:"name"`
	Version     string `json:"version,omitempty"` // empty: none live
	Digest      string `json:"digest,omitempty"`
	Deploying   bool   `json:"deploying,omitempty"`
	LastResult  string `json:"last_result,omitempty"`
	Maintenance bool   `json:"maintenance,omitempty"`
}

// record is what a host keeps of the last rollout that locked it, so
// rollback --hosts knows what that rollout replaced there.
type record struct {
	Rollout    string    `json:"rollout"`
	Reached    bool      `json:"reached"`
	Replaced   *Version  `json:"replaced,omitempty"`
	Deployed   *Version  `json:"deployed,omitempty"`
	RolledBack bool      `json:"rolled_back,omitempty"`
	At         time.Time `json:"at"`
}
