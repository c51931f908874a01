package app

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"

	"github.com/keter-systemd/keter/bundle"
	"github.com/keter-systemd/keter/internal/atomicfile"
	"github.com/keter-systemd/keter/unitgen"
)

// The operator's env layer (`keter env set`): variables that belong to an
// app, not to a bundle, so they outlive redeploys, rollbacks and keter
// restarts. Each app's are kept in ROOT/etc/operator-env/APP.json (root
// only), a folder reconcile never clears; unitgen puts them on top of
// every other layer, in the root-only env file.

// ErrInvalidEnv means variables keter refuses to store.
var ErrInvalidEnv = errors.New("invalid environment variables")

// ErrNoSuchVar means unset named a variable the app does not have.
var ErrNoSuchVar = errors.New("no such variable")

// EnvVar is one variable of an app's operator layer. Env leaves a secret
// one's Value empty: secrets are written, never read back.
type EnvVar struct {
	Name   string `json:"name"`
	Value  string `json:"value,omitempty"`
	Secret bool   `json:"secret,omitempty"`
}

// operatorVar is how a variable is stored.
type operatorVar struct {
	Value  string `json:"value"`
	Secret bool   `json:"secret,omitempty"`
}

type operatorFile struct {
	Vars map[string]operatorVar `json:"vars"`
}

// operatorEnv serialises changes to the store: one read-modify-write at
// a time.
type operatorEnv struct{ mu sync.Mutex }

func (m *Manager) operatorEnvPath(name string) string {
	return filepath.Join(m.cfg.Etc(), "operator-env", name+".json")
}

func (m *Manager) loadOperatorEnv(name string) (map[string]operatorVar, error) {
	if err := bundle.ValidAppName(name); err != nil { // it names a file
		return nil, err
	}
	path := m.operatorEnvPath(name)
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return map[string]operatorVar{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading operator env of %s: %w", name, err)
	}
	var f operatorFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("parsing operator env %s: %w (fix it, or delete it and set the variables again)", path, err)
	}
	if f.Vars == nil {
		f.Vars = map[string]operatorVar{}
	}
	return f.Vars, nil
}

// saveOperatorEnv writes the app's variables atomically, root only; no
// variables left: no file.
func (m *Manager) saveOperatorEnv(name string, vars map[string]operatorVar) error {
	path := m.operatorEnvPath(name)
	if len(vars) == 0 {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("saving operator env of %s: %w", name, err)
		}
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("saving operator env of %s: %w", name, err)
	}
	// A folder made before (by hand, a restore) may be looser: it names
	// the apps that have secrets.
	if err := os.Chmod(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("saving operator env of %s: %w", name, err)
	}
	data, err := json.MarshalIndent(operatorFile{Vars: vars}, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.Write(path, data, 0o600); err != nil {
		return fmt.Errorf("saving operator env of %s: %w", name, err)
	}
	return nil
}

// OperatorEnv is app name's operator layer, for building its units.
func (m *Manager) OperatorEnv(name string) (map[string]string, error) {
	m.opEnv.mu.Lock()
	defer m.opEnv.mu.Unlock()
	vars, err := m.loadOperatorEnv(name)
	if err != nil {
		return nil, err
	}
	out := make(map[string]string, len(vars))
	for k, v := range vars {
		out[k] = v.Value
	}
	return out, nil
}

// Env lists app name's operator variables, sorted, secret values left out.
func (m *Manager) Env(name string) ([]EnvVar, error) {
	m.opEnv.mu.Lock()
	defer m.opEnv.mu.Unlock()
	vars, err := m.loadOperatorEnv(name)
	if err != nil {
		return nil, err
	}
	out := make([]EnvVar, 0, len(vars))
	for k, v := range vars {
		e := EnvVar{Name: k, Secret: v.Secret}
		if !v.Secret {
			e.Value = v.Value
		}
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// MaxOperatorTotal bounds an app's whole operator layer (names and
// values, in bytes): the kernel refuses to start a process whose
// environment passes a few MiB (E2BIG), and the app would then fail every
// deploy until the operator unset some.
const MaxOperatorTotal = 1 << 20

// SetEnv stores variables in app name's operator layer (a later one of the
// same name wins); it does not touch the running version (see Restart).
// Every problem is reported; nothing is stored unless all are valid. A
// variable once secret stays secret (listed as ***) when set again
// without --secret, until it is unset: re-setting a token in a hurry
// must not make it readable.
func (m *Manager) SetEnv(name string, vars []EnvVar) error {
	if len(vars) == 0 {
		return fmt.Errorf("%w: none given", ErrInvalidEnv)
	}
	portVars := m.portEnvVars(name)
	var errs []error
	for _, v := range vars {
		if err := unitgen.CheckOperatorVar(v.Name, v.Value, portVars); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidEnv, err)
	}
	m.opEnv.mu.Lock()
	defer m.opEnv.mu.Unlock()
	cur, err := m.loadOperatorEnv(name)
	if err != nil {
		return err
	}
	names := make([]string, 0, len(vars))
	for _, v := range vars {
		cur[v.Name] = operatorVar{Value: v.Value, Secret: v.Secret || cur[v.Name].Secret}
		names = append(names, v.Name)
	}
	total := 0
	for k, v := range cur {
		total += len(k) + len(v.Value) + 2
	}
	if total > MaxOperatorTotal {
		return fmt.Errorf("%w: %s's operator env would be %d bytes, more than %d: unset some, or put large values (certificates, keys) in a file the app reads", ErrInvalidEnv, name, total, MaxOperatorTotal)
	}
	if err := m.saveOperatorEnv(name, cur); err != nil {
		return err
	}
	m.log.Info("operator env set", "app", name, "vars", names) // names only, never values
	return nil
}

// UnsetEnv removes variables from app name's operator layer; a name it
// does not have is an error and nothing is removed.
func (m *Manager) UnsetEnv(name string, names []string) error {
	if len(names) == 0 {
		return fmt.Errorf("%w: none given", ErrInvalidEnv)
	}
	m.opEnv.mu.Lock()
	defer m.opEnv.mu.Unlock()
	cur, err := m.loadOperatorEnv(name)
	if err != nil {
		return err
	}
	var missing []string
	for _, k := range names {
		if _, ok := cur[k]; !ok {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w in the operator env of %s: %v (keter env %s lists them)", ErrNoSuchVar, name, missing, name)
	}
	for _, k := range names {
		delete(cur, k)
	}
	if err := m.saveOperatorEnv(name, cur); err != nil {
		return err
	}
	m.log.Info("operator env unset", "app", name, "vars", names)
	return nil
}

// portEnvVars are the live version's port-env-vars names, which keter
// sets; none when nothing is live (a deploy then refuses them itself).
func (m *Manager) portEnvVars(name string) []string {
	v := m.liveVersion(name)
	if v == nil || v.cfg == nil {
		return nil
	}
	var out []string
	for _, s := range v.cfg.Stanzas {
		if s.WebApp != nil {
			out = append(out, s.WebApp.PortEnvVars...)
		}
	}
	return out
}
