package app

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/keter-systemd/keter/internal/atomicfile"
)

// stateFile is what keter keeps in ROOT/etc to re-adopt running versions
// after a restart. Unit metadata tells which units belong to a version;
// this file says which version of each app is live.
type stateFile struct {
	Apps map[string]liveRecord `json:"apps"`
	// Draining are old versions still serving what they were sent before
	// a switch, with their deadlines.
	Draining []drainRecord `json:"draining,omitempty"`
	// Canaries are apps' canaries (canary.go).
	Canaries map[string]canaryRecord `json:"canaries,omitempty"`
}

// liveRecord is one app's live version.
type liveRecord struct {
	Version    string    `json:"version"`
	Digest     string    `json:"digest"`
	File       fileID    `json:"file"`
	Bundle     string    `json:"bundle"`
	Dir        string    `json:"dir"`
	Ports      slots     `json:"ports"` // stanza index → each instance's port
	Fronts     slots     `json:"fronts,omitempty"`
	Units      []string  `json:"units"`
	Jobs       []*job    `json:"jobs,omitempty"` // timers and services, not in Units
	EnvFiles   []string  `json:"env_files"`
	DeployedAt time.Time `json:"deployed_at"`
	// Sleepers are the instances that sleep when idle, by app unit.
	Sleepers map[string]sleepRecord `json:"sleepers,omitempty"`

	// OperatorEnv identifies the operator env file the units read.
	OperatorEnv fileID `json:"operator_env"`

	// CanaryFronts are the app's canary fronts (canary.go).
	CanaryFronts slots `json:"canary_fronts,omitempty"`

	// Manifest hashes Dir as unpacked (bundle.Manifest); "" in state
	// written before it.
	Manifest string `json:"manifest,omitempty"`
}

// slots are a webapp stanza's instances' ports (stanza index → one port
// per instance). State written before instances holds one port per
// stanza, a number instead of a list: it reads as one instance.
type slots map[int][]int

func (s *slots) UnmarshalJSON(b []byte) error {
	var raw map[int]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	out := slots{}
	for i, r := range raw {
		var one int
		if err := json.Unmarshal(r, &one); err == nil {
			out[i] = []int{one}
			continue
		}
		var many []int
		if err := json.Unmarshal(r, &many); err != nil {
			return fmt.Errorf("ports of stanza %d: %w", i, err)
		}
		out[i] = many
	}
	*s = out
	return nil
}

func loadState(path string) (stateFile, error) {
	s := stateFile{Apps: map[string]liveRecord{}}
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return s, fmt.Errorf("reading state: %w", err)
	}
	if err := json.Unmarshal(data, &s); err != nil {
		return s, fmt.Errorf("parsing state %s: %w", path, err)
	}
	if s.Apps == nil {
		s.Apps = map[string]liveRecord{}
	}
	return s, nil
}

func saveState(path string, s stateFile) error {
	data, err := s.marshal()
	if err != nil {
		return err
	}
	return atomicfile.Write(path, data, 0o600)
}

// marshal writes no indentation: every save writes every app (the CPU
// profile of 1000 bundles dropped at once: 5.95 s of keter's 117 s in
// MarshalIndent, 2.33 s of them indenting). jq reads it for people.
func (s stateFile) marshal() ([]byte, error) { return json.Marshal(s) }
