package unitgen

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Prefix starts the name of every unit that runs app code.
const Prefix = "keter-app-"

// Slice holds every app unit.
const Slice = "keter.slice"

const (
	suffix      = ".service"
	maxUnitName = 255 // systemd's UNIT_NAME_MAX without the NUL
)

// ErrName classes a name that cannot become a unit name.
var ErrName = errors.New("invalid unit name part")

// UnitName returns the unit name for one stanza of one version of an app.
// See the package documentation for the scheme.
func UnitName(app, version, stanza string) (string, error) {
	return unitName(app, version, stanza, 0)
}

// unitName adds ".INSTANCE" to the stanza part when instance > 0; a "."
// inside the stanza itself is escaped, so the name reads back.
func unitName(app, version, stanza string, instance int) (string, error) {
	var errs []error
	for _, p := range [][2]string{{"app", app}, {"version", version}, {"stanza", stanza}} {
		if p[1] == "" {
			errs = append(errs, fmt.Errorf("%w: %s is empty", ErrName, p[0]))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return "", err
	}
	part := strings.ReplaceAll(escape(stanza, false), ".", `\x2e`)
	if instance > 0 {
		part += "." + strconv.Itoa(instance)
	}
	name := Prefix + escape(app, true) + "-" + escape(version, false) + "-" + part + suffix
	if len(name) > maxUnitName {
		return "", fmt.Errorf("%w: %q is longer than %d characters", ErrName, name, maxUnitName)
	}
	return name, nil
}

// AppPrefix is the name prefix of every unit of app. It also matches apps
// whose name continues with "-"; compare Meta.App to be exact.
func AppPrefix(app string) string { return Prefix + escape(app, true) + "-" }

// ParseUnitName reads app, version and stanza back from a name made by
// UnitName. It reports false for any other name.
func ParseUnitName(name string) (Meta, bool) {
	rest, ok := strings.CutPrefix(name, Prefix)
	if !ok {
		return Meta{}, false
	}
	if m, ok := parseJobName(name); ok {
		return m, true
	}
	if rest, ok = strings.CutSuffix(rest, suffix); !ok {
		return Meta{}, false
	}
	i := strings.LastIndexByte(rest, '-')
	if i < 0 {
		return Meta{}, false
	}
	j := strings.LastIndexByte(rest[:i], '-')
	if j < 0 {
		return Meta{}, false
	}
	var m Meta
	var err1, err2, err3 error
	m.App, err1 = unescape(rest[:j])
	m.Version, err2 = unescape(rest[j+1 : i])
	part := rest[i+1:]
	// web0.2: instance 2 of stanza web0.
	if st, n, ok := strings.Cut(part, "."); ok {
		inst, err := strconv.Atoi(n)
		if err != nil || inst < 1 {
			return Meta{}, false
		}
		part, m.Instance = st, inst
	}
	m.Stanza, err3 = unescape(part)
	if err1 != nil || err2 != nil || err3 != nil {
		return Meta{}, false
	}
	// Only the canonical spelling counts, so each unit has one meaning.
	if again, err := m.Unit(); err != nil || again != name {
		return Meta{}, false
	}
	return m, true
}

func keep(c byte, dash bool) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_':
		return true
	case c == '-':
		return dash
	}
	return false
}

// escape writes every byte outside the kept set as \xNN, as systemd-escape.
func escape(s string, dash bool) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if keep(c, dash) {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, `\x%02x`, c)
	}
	return b.String()
}

func unescape(s string) (string, error) {
	if s == "" {
		return "", ErrName
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' {
			b.WriteByte(s[i])
			continue
		}
		if i+4 > len(s) || s[i+1] != 'x' {
			return "", ErrName
		}
		v, err := strconv.ParseUint(s[i+2:i+4], 16, 8)
		if err != nil {
			return "", ErrName
		}
		b.WriteByte(byte(v))
		i += 3
	}
	return b.String(), nil
}

// userName is the stable dynamic user of an app. systemd wants
// [a-zA-Z_][a-zA-Z0-9_-]* of at most 31 characters; other app names get a
// readable prefix plus a hash of the full name.
func userName(app string) string {
	name := Prefix + app
	if len(name) <= 31 && validUser(name) {
		return name
	}
	var b strings.Builder
	for i := 0; i < len(app) && b.Len() < 12; i++ {
		c := app[i]
		if keep(c, true) && c != '.' {
			b.WriteByte(c)
		} else {
			b.WriteByte('_')
		}
	}
	return fmt.Sprintf("keter-%s-%08x", b.String(), fnv32(app))
}

func validUser(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(keep(c, i > 0) && c != '.' && !(i == 0 && c >= '0' && c <= '9')) {
			return false
		}
	}
	return s != ""
}

// fnv32 is FNV-1a; stable across releases, which the user name relies on.
func fnv32(s string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= 16777619
	}
	return h
}
