package bundle

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// walker reads a yaml.Node tree by hand so every problem carries its key
// path and all of them are reported, not just the first.
type walker struct {
	errs  []error
	warns []string
}

func (w *walker) fail(path string, err error) {
	w.errs = append(w.errs, fmt.Errorf("%s: %w", path, err))
}

func (w *walker) failf(path, format string, args ...any) {
	w.fail(path, invalid(format, args...))
}

func (w *walker) warn(path, format string, args ...any) {
	w.warns = append(w.warns, path+": "+fmt.Sprintf(format, args...))
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func index(path string, i int) string { return path + "[" + strconv.Itoa(i) + "]" }

func kind(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return "null"
		}
		return "a scalar " + describe(n.Value)
	case yaml.AliasNode:
		return "an alias"
	}
	return "nothing"
}

// obj is a mapping node with its known keys; unknown keys become warnings
// when done is called.
type obj struct {
	w     *walker
	path  string
	keys  []string
	vals  map[string]*yaml.Node
	known map[string]bool
}

// object opens a mapping; it returns nil (after recording an error) if n
// is not one.
func (w *walker) object(n *yaml.Node, path string) *obj {
	n = deref(n)
	if n == nil || n.Kind != yaml.MappingNode {
		if path == "" {
			path = "(top level)"
		}
		w.failf(path, "must be a mapping, found %s", kind(orEmpty(n)))
		return nil
	}
	o := &obj{w: w, path: path, vals: map[string]*yaml.Node{}, known: map[string]bool{}}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		if k.Kind != yaml.ScalarNode {
			w.failf(path, "mapping keys must be strings")
			continue
		}
		if k.Value == "<<" {
			w.failf(join(path, "<<"), "YAML merge keys are not supported")
			continue
		}
		if _, dup := o.vals[k.Value]; dup {
			w.failf(join(path, k.Value), "key given twice")
			continue
		}
		o.keys = append(o.keys, k.Value)
		o.vals[k.Value] = n.Content[i+1]
	}
	return o
}

func orEmpty(n *yaml.Node) *yaml.Node {
	if n == nil {
		return &yaml.Node{}
	}
	return n
}

// deref follows aliases (bounded, since yaml.v3 already refuses cycles).
func deref(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 16; i++ {
		n = n.Alias
	}
	if n != nil && n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
		return deref(n.Content[0])
	}
	return n
}

// get returns the value of key, nil when absent or null.
func (o *obj) get(key string) *yaml.Node {
	o.known[key] = true
	n := deref(o.vals[key])
	if n == nil || (n.Kind == yaml.ScalarNode && n.Tag == "!!null") {
		return nil
	}
	return n
}

func (o *obj) has(key string) bool { return o.get(key) != nil }

// done warns about every key nobody asked for.
func (o *obj) done() {
	for _, k := range o.keys {
		if !o.known[k] {
			o.w.warn(join(o.path, k), "unknown key ignored")
		}
	}
}

func (o *obj) str(key string) (string, bool) {
	n := o.get(key)
	if n == nil {
		return "", false
	}
	if n.Kind != yaml.ScalarNode {
		o.w.failf(join(o.path, key), "must be a string, found %s", kind(n))
		return "", false
	}
	if strings.IndexByte(n.Value, 0) >= 0 {
		o.w.failf(join(o.path, key), "must not contain NUL bytes")
		return "", false
	}
	return n.Value, true
}

func (o *obj) requiredStr(key string) (string, bool) {
	s, ok := o.str(key)
	if !ok && o.get(key) == nil {
		o.w.failf(join(o.path, key), "required")
	}
	if ok && s == "" {
		o.w.failf(join(o.path, key), "must not be empty")
		return "", false
	}
	return s, ok
}

func (o *obj) boolean(key string, def bool) bool {
	if b, ok := o.optBool(key); ok {
		return b
	}
	return def
}

// optBool reads an optional true or false; ok is false when key is
// absent, null or not a bool (which is reported).
func (o *obj) optBool(key string) (b, ok bool) {
	n := o.get(key)
	if n == nil {
		return false, false
	}
	if n.Kind != yaml.ScalarNode || n.Decode(&b) != nil {
		o.w.failf(join(o.path, key), "must be true or false, found %s", kind(n))
		return false, false
	}
	return b, true
}

func (o *obj) integer(key string) (int64, bool) {
	n := o.get(key)
	if n == nil {
		return 0, false
	}
	var v int64
	if n.Kind != yaml.ScalarNode || n.Decode(&v) != nil {
		o.w.failf(join(o.path, key), "must be a whole number, found %s", kind(n))
		return 0, false
	}
	return v, true
}

// intRange reads an optional whole number within [lo, hi].
func (o *obj) intRange(key string, lo, hi int64) (int64, bool) {
	v, ok := o.integer(key)
	if ok && (v < lo || v > hi) {
		o.w.failf(join(o.path, key), "must be between %d and %d, found %d", lo, hi, v)
		return 0, false
	}
	return v, ok
}

// duration reads an optional Go-style duration ("30s", "2m30s") within
// (0, hi]; a bare number is refused, since Keter's numbers are
// microseconds and a silent guess at the unit would be worse.
func (o *obj) duration(key string, hi time.Duration) (time.Duration, bool) {
	n := o.get(key)
	if n == nil {
		return 0, false
	}
	p := join(o.path, key)
	if n.Kind != yaml.ScalarNode || n.Tag == "!!int" || n.Tag == "!!float" {
		o.w.failf(p, "must be a duration with its unit, such as 30s or 2m, found %s", kind(n))
		return 0, false
	}
	d, err := time.ParseDuration(n.Value)
	if err != nil {
		o.w.failf(p, "must be a duration with its unit, such as 30s or 2m, found %s", describe(n.Value))
		return 0, false
	}
	if d <= 0 || d > hi {
		o.w.failf(p, "must be more than 0s and at most %s, found %s", hi, d)
		return 0, false
	}
	return d, true
}

// strList reads a list of strings; a single string is accepted as a list
// of one only when single is true.
func (o *obj) strList(key string) []string {
	n := o.get(key)
	if n == nil {
		return nil
	}
	p := join(o.path, key)
	if n.Kind != yaml.SequenceNode {
		o.w.failf(p, "must be a list of strings, found %s", kind(n))
		return nil
	}
	out := make([]string, 0, len(n.Content))
	for i, c := range n.Content {
		c = deref(c)
		if c == nil || c.Kind != yaml.ScalarNode || c.Tag == "!!null" {
			o.w.failf(index(p, i), "must be a string, found %s", kind(orEmpty(c)))
			continue
		}
		if strings.IndexByte(c.Value, 0) >= 0 {
			o.w.failf(index(p, i), "must not contain NUL bytes")
			continue
		}
		out = append(out, c.Value)
	}
	return out
}

// strMap reads a mapping of strings to scalars (kept as their text).
func (o *obj) strMap(key string) map[string]string {
	n := o.get(key)
	if n == nil {
		return nil
	}
	p := join(o.path, key)
	m := o.w.object(n, p)
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m.keys))
	for _, k := range m.keys {
		v, ok := m.str(k)
		if !ok {
			if m.get(k) == nil {
				v = "" // `KEY:` with no value is an empty string
			} else {
				continue
			}
		}
		out[k] = v
	}
	return out
}

// list returns the items of a sequence.
func (o *obj) list(key string) ([]*yaml.Node, string) {
	n := o.get(key)
	p := join(o.path, key)
	if n == nil {
		return nil, p
	}
	if n.Kind != yaml.SequenceNode {
		o.w.failf(p, "must be a list, found %s", kind(n))
		return nil, p
	}
	return n.Content, p
}
