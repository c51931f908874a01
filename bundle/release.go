package bundle

import "time"

// Release is the top-level `release:` key (ours; the Haskell Keter has
// none): a command run once per new bundle version, after unpacking and
// plugins and before any unit of the version starts, in the sandbox and
// environment of the app's first webapp stanza (else its first background
// stanza), without PORT. A failure keeps the live version serving.
type Release struct {
	// Exec is relative to the bundle root unless written absolute, as a
	// stanza's exec.
	Exec    string        `json:"exec"`
	Args    []string      `json:"args"`
	Timeout time.Duration `json:"timeout"` // DefaultReleaseTimeout unless given
}

// Bounds of a release step's `timeout`.
const (
	DefaultReleaseTimeout = 10 * time.Minute
	MaxReleaseTimeout     = 24 * time.Hour
)

// parseRelease reads `release: {exec, args, timeout}`; nil when absent. Call it
// after the stanzas are read: the step borrows a stanza's sandbox.
func parseRelease(w *walker, top *obj, c *AppConfig) *Release {
	n := top.get("release")
	if n == nil {
		return nil
	}
	o := w.object(n, "release")
	if o == nil {
		return nil
	}
	defer o.done()
	r := &Release{Exec: o.pathKey("exec", true, true), Args: []string{}, Timeout: DefaultReleaseTimeout}
	if a := o.strList("args"); a != nil {
		r.Args = a
	}
	if d, ok := o.duration("timeout", MaxReleaseTimeout); ok {
		r.Timeout = d
	}
	for _, k := range []string{"env", "forward-env"} {
		if o.has(k) {
			w.failf(join("release", k), "not allowed: the release step gets the environment of the app's first webapp (or background) stanza; set it there")
		}
	}
	if releaseStanza(c) < 0 && len(c.Stanzas) > 0 {
		w.failf("release", "needs a webapp or background stanza: the step runs in its sandbox and environment")
	}
	return r
}

// ReleaseStanza is the index of the stanza whose sandbox and environment
// the release step borrows: the first webapp, else the first background
// stanza; -1 when there is neither.
func (c *AppConfig) ReleaseStanza() int { return releaseStanza(c) }

func releaseStanza(c *AppConfig) int {
	for _, t := range []StanzaType{TypeWebApp, TypeBackground} {
		for i, s := range c.Stanzas {
			if s.Type == t && (s.WebApp != nil || s.Background != nil) {
				return i
			}
		}
	}
	return -1
}
