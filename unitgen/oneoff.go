package unitgen

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
	godbus "github.com/godbus/dbus/v5"
)

// ExecStanza is the STANZA part of a one-off command's unit (keter exec):
// keter-app-APP-VERSION-exec.N.service, N telling runs apart. It is no
// stanza of the bundle ("web0", "bg1"), so a one-off unit is never taken
// for one of the version's own units.
const ExecStanza = "exec"

// IsOneOff reports whether m names a one-off command's unit.
func IsOneOff(m Meta) bool { return m.Stanza == ExecStanza }

// OneOff describes a one-off command run like a stanza of a version.
type OneOff struct {
	// Run tells this run apart from the version's other one-off runs
	// (1 or more); it is the unit name's instance number.
	Run  int
	Argv []string // the command and its arguments, run by /bin/sh's exec
	// User is who asked for it (e.g. "1001/deploy"), for the journal.
	User string
	// Stdio, when set, are the open file descriptors of the command's
	// stdin, stdout and stderr (the caller's own, handed over); systemd
	// gets copies of them with the start request.
	Stdio []int
}

// OneOffUnit turns a stanza's unit, as Build made it, into a unit that runs
// argv once with the same user, sandbox, limits, working directory and
// environment: its own name, no restarts, no stop hook, and the journal
// fields KETER_STANZA=exec and KETER_EXEC_USER. The command always goes
// through a launcher script (argv as typed, no expansion by systemd; a
// bare name is looked up in PATH); its environment file is a copy of the
// stanza's under its own name. The caller writes both, as for Build, and
// deletes them when the run ends.
func OneOffUnit(base Unit, o OneOff) (Unit, error) {
	var errs []error
	if len(o.Argv) == 0 || o.Argv[0] == "" {
		errs = append(errs, errors.New("no command to run"))
	}
	for _, a := range o.Argv {
		if strings.IndexByte(a, 0) >= 0 {
			errs = append(errs, fmt.Errorf("argument %q holds a NUL byte", a))
		}
	}
	if o.Stdio != nil && len(o.Stdio) != 3 {
		errs = append(errs, fmt.Errorf("want 3 file descriptors for stdin, stdout and stderr, not %d", len(o.Stdio)))
	}
	if o.Run < 1 {
		errs = append(errs, fmt.Errorf("run number %d is not positive", o.Run))
	}
	dir, ok := stringProp(base.Properties, "WorkingDirectory")
	if !ok {
		errs = append(errs, errors.New("stanza unit has no working directory"))
	}
	meta := Meta{App: base.Meta.App, Version: base.Meta.Version, Stanza: ExecStanza, Instance: o.Run}
	name, err := meta.Unit()
	if err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return Unit{}, fmt.Errorf("building a one-off unit of %s: %w", base.Meta.App, err)
	}
	stem := strings.TrimSuffix(strings.TrimPrefix(name, Prefix), suffix)
	launcher := filepath.Join(dir, ".keter-exec-"+stem)
	var script strings.Builder
	script.WriteString("# Written by keter for keter exec: runs the command as it was typed.\nexec")
	for _, a := range o.Argv {
		script.WriteString(" '" + strings.ReplaceAll(a, "'", `'\''`) + "'")
	}
	script.WriteString("\n")

	drop := []string{"Description", "ExecStart", "EnvironmentFiles", "LogExtraFields", "Restart", "RestartUSec",
		"StartLimitBurst", "StartLimitIntervalUSec", "ExecStopPostEx"}
	props := slices.DeleteFunc(slices.Clone(base.Properties), func(p sddbus.Property) bool { return slices.Contains(drop, p.Name) })
	props = append(props,
		sddbus.PropDescription(Description(meta)),
		prop("ExecStart", []execCmd{{"/bin/sh", []string{"/bin/sh", launcher}, false}}),
		prop("Restart", "no"),
		prop("LogExtraFields", [][]byte{
			[]byte("KETER_APP=" + meta.App),
			[]byte("KETER_VERSION=" + meta.Version),
			[]byte("KETER_STANZA=" + ExecStanza),
			[]byte("KETER_INSTANCE=" + strconv.Itoa(o.Run)),
			[]byte("KETER_EXEC_USER=" + o.User),
		}),
	)
	for i, key := range []string{"StandardInputFileDescriptor", "StandardOutputFileDescriptor", "StandardErrorFileDescriptor"} {
		if o.Stdio != nil {
			props = append(props, prop(key, godbus.UnixFD(o.Stdio[i])))
		}
	}
	u := Unit{Name: name, Meta: meta, Launcher: launcher, LauncherScript: []byte(script.String())}
	if base.EnvFile != "" {
		u.EnvFile = filepath.Join(filepath.Dir(base.EnvFile), strings.TrimSuffix(name, suffix)+".env")
		u.Secrets = base.Secrets
		props = append(props, prop("EnvironmentFiles", []envFileRef{{u.EnvFile, false}}))
	}
	u.Properties = props
	return u, nil
}

func stringProp(ps []sddbus.Property, name string) (string, bool) {
	for _, p := range ps {
		if p.Name == name {
			s, ok := p.Value.Value().(string)
			return s, ok
		}
	}
	return "", false
}
