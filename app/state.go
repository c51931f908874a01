package app

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// stateFile is what keter keeps in ROOT/etc to re-adopt running versions
// after a restart. Unit metadata tells which units belong to a version;
// this file says which version of each app is live.
type stateFile struct {
	Apps map[string]liveRecord `json:"apps"`
}

// liveRecord is one app's live version.
type liveRecord struct {
	Version    string      `json:"version"`
	Digest     string      `json:"digest"`
	File       fileID      `json:"file"`
	Bundle     string      `json:"bundle"`
	Dir        string      `json:"dir"`
	Ports      map[int]int `json:"ports"` // stanza index → port
	Units      []string    `json:"units"`
	EnvFiles   []string    `json:"env_files"`
	DeployedAt time.Time   `json:"deployed_at"`
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
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return writeAtomic(path, data, 0o600)
}

// writeAtomic writes a temp file in the same folder, fsyncs and renames,
// so a crash leaves either the old or the new content.
func writeAtomic(path string, data []byte, mode os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
