package bundle

import "time"

// AppConfig is a bundle's config/keter.yaml in stanza form, whichever of
// Keter's formats it was written in. Paths inside are relative to the
// bundle's root folder (already resolved from the config/ folder and
// cleaned), except where a field says absolute paths are kept.
type AppConfig struct {
	Stanzas []Stanza `json:"stanzas"`
	Plugins Plugins  `json:"plugins"`
	// Drain is how long an old version may go on serving connections
	// opened before a switch (streams, downloads, WebSockets) before it
	// is stopped; 0 means keter-config.yaml's graceful-drain-micros.
	Drain time.Duration `json:"drain,omitempty"`
	// Release is the release step (see Release); nil when there is none.
	Release *Release `json:"release,omitempty"`
}

// MaxDrain bounds a bundle's drain.
const MaxDrain = 24 * time.Hour

// StanzaType is Keter's `type` key.
type StanzaType string

const (
	TypeWebApp       StanzaType = "webapp"
	TypeStaticFiles  StanzaType = "static-files"
	TypeRedirect     StanzaType = "redirect"
	TypeReverseProxy StanzaType = "reverse-proxy"
	TypeBackground   StanzaType = "background"
)

// Stanza is one entry of `stanzas:`; exactly one of the pointers matching
// Type is set.
type Stanza struct {
	Type           StanzaType    `json:"type"`
	RequiresSecure bool          `json:"requires-secure"`
	WebApp         *WebApp       `json:"webapp,omitempty"`
	StaticFiles    *StaticFiles  `json:"static-files,omitempty"`
	Redirect       *Redirect     `json:"redirect,omitempty"`
	ReverseProxy   *ReverseProxy `json:"reverse-proxy,omitempty"`
	Background     *Background   `json:"background,omitempty"`
	Scheduled      *Scheduled    `json:"scheduled,omitempty"`
	Front          Front         `json:"front,omitzero"` // ours: limits, buffering, gzip (front.go)
}

// SSL is Keter's `ssl` key: false, true (use the listener's certificate),
// an object naming a per-stanza certificate served by SNI, or acme (a
// certificate per host from keter's ACME CA, also served by SNI).
// Certificate paths may be absolute (e.g. /etc/letsencrypt/...).
type SSL struct {
	Enabled           bool     `json:"enabled"`
	ACME              bool     `json:"acme,omitempty"`
	Certificate       string   `json:"certificate,omitempty"`
	Key               string   `json:"key,omitempty"`
	ChainCertificates []string `json:"chain-certificates,omitempty"`
}

// Exec is what a webapp or background stanza runs. Path is relative to the
// bundle root unless it was written absolute.
type Exec struct {
	Path       string            `json:"exec"`
	Args       []string          `json:"args"`
	Env        map[string]string `json:"env,omitempty"`
	ForwardEnv []string          `json:"forward-env,omitempty"`
}

// Systemd holds our additions to webapp and background stanzas (key
// `systemd:`): resource limits and sandbox opt-outs. Zero means unset.
type Systemd struct {
	MemoryMax       uint64 `json:"memory-max,omitempty"`        // bytes; YAML accepts 512M, 2G
	CPUQuotaPercent uint32 `json:"cpu-quota,omitempty"`         // YAML "50%"; 200 = two cores
	TasksMax        uint64 `json:"tasks-max,omitempty"`         //
	StopTimeoutSec  uint32 `json:"stop-timeout-sec,omitempty"`  // SIGTERM → SIGKILL; default in unitgen
	RestartDelaySec uint32 `json:"restart-delay-sec,omitempty"` // webapps only; background has restart-delay-seconds
	// MemoryDenyWriteExecute is the stanza's choice of systemd's W^X
	// setting, nil when it makes none (unitgen's default applies). Set by
	// memory-deny-write-execute, or by allow-jit meaning its opposite.
	MemoryDenyWriteExecute *bool `json:"memory-deny-write-execute,omitempty"`
}

// MaxInstances bounds a webapp stanza's `instances`.
const MaxInstances = 64

// WebApp is a `webapp` stanza.
type WebApp struct {
	Exec
	Hosts []string `json:"hosts"` // first is the APPROOT host; lower-cased
	SSL   SSL      `json:"ssl"`
	// ConnectionTimeBound is the per-stanza bound in microseconds, nil when unset.
	ConnectionTimeBound  *int64       `json:"connection-time-bound,omitempty"`
	EnsureAliveTimeBound int64        `json:"ensure-alive-time-bound"` // µs, default 90000000
	PortEnvVars          []string     `json:"port-env-vars,omitempty"`
	Middleware           []Middleware `json:"middleware,omitempty"`
	HealthCheckPath      string       `json:"health-check-path,omitempty"` // our addition
	// Instances is how many units run the stanza at once (ours), each on
	// a port of its own, nginx balancing them; 0 and 1 mean one.
	Instances int     `json:"instances,omitempty"`
	Systemd   Systemd `json:"systemd"`
	// IdleStop stops the stanza's units after that long without a
	// request (ours); IdleOff: never, 0: the host's default. See Sleeps.
	IdleStop time.Duration `json:"idle-stop,omitempty"`
	// SocketActivation: the app takes its listening socket from systemd
	// (LISTEN_FDS) instead of binding PORT behind a proxy (ours).
	SocketActivation bool `json:"socket-activation,omitempty"`
	Access                // allow-from, deny-from (ours)
}

// Middleware is one item of Keter's `middleware` list, kept as parsed.
// Name is the item's key (`basic-auth`, `headers`, ...) or the bare string.
type Middleware struct {
	Name   string         `json:"name"`
	Config map[string]any `json:"config,omitempty"`
}

// StaticFiles is a `static-files` stanza. Root must stay inside the bundle.
type StaticFiles struct {
	Root                string       `json:"root"`
	Hosts               []string     `json:"hosts"`
	DirectoryListing    bool         `json:"directory-listing"`
	SSL                 SSL          `json:"ssl"`
	ConnectionTimeBound *int64       `json:"connection-time-bound,omitempty"`
	Middleware          []Middleware `json:"middleware,omitempty"`
	Access                           // allow-from, deny-from (ours)
}

// Redirect is a `redirect` stanza.
type Redirect struct {
	Hosts   []string         `json:"hosts"`
	Status  int              `json:"status"` // default 303
	Actions []RedirectAction `json:"actions"`
	SSL     SSL              `json:"ssl"`
}

// RedirectAction is one of `actions`: either URL is set, or Host (with
// Secure and Port), which keeps the request's path and query. Path empty
// matches every path.
type RedirectAction struct {
	Path   string `json:"path,omitempty"`
	URL    string `json:"url,omitempty"`
	Host   string `json:"host,omitempty"`
	Secure bool   `json:"secure,omitempty"`
	Port   int    `json:"port,omitempty"`
}

// ReverseProxy is a `reverse-proxy` stanza.
type ReverseProxy struct {
	ReversedHost        string       `json:"reversed-host"`
	ReversedPort        int          `json:"reversed-port"`
	ReversedSSL         bool         `json:"reversed-ssl"`
	ReversingHost       string       `json:"reversing-host"`
	SSL                 SSL          `json:"ssl"`
	Timeout             *int64       `json:"timeout,omitempty"` // µs
	RewriteRequest      []Rewrite    `json:"rewrite-request,omitempty"`
	RewriteResponse     []Rewrite    `json:"rewrite-response,omitempty"`
	PreserveHost        bool         `json:"preserve-host"`
	ConnectionTimeBound *int64       `json:"connection-time-bound,omitempty"`
	Middleware          []Middleware `json:"middleware,omitempty"`
	Access                           // allow-from, deny-from (ours)
}

// Rewrite is one header rewrite rule: From is a regex, To may use \1 refs.
type Rewrite struct {
	Header string `json:"header"`
	From   string `json:"from"`
	To     string `json:"to"`
}

// Background is a `background` stanza.
type Background struct {
	Exec
	RestartCount        int     `json:"restart-count"` // -1 = unlimited (default)
	RestartDelaySeconds int     `json:"restart-delay-seconds"`
	Systemd             Systemd `json:"systemd"`
}

// Plugins is the `plugins:` key (or flat `postgres: true`).
type Plugins struct {
	Postgres *Postgres `json:"postgres,omitempty"` // nil: not asked for
}

// Postgres is the postgres plugin; an empty Server means keter's default.
type Postgres struct {
	Server string `json:"server,omitempty"`
	Port   int    `json:"port,omitempty"`
}

// Hosts returns every host name the stanza answers for, in order.
func (s Stanza) Hosts() []string {
	switch {
	case s.WebApp != nil:
		return s.WebApp.Hosts
	case s.StaticFiles != nil:
		return s.StaticFiles.Hosts
	case s.Redirect != nil:
		return s.Redirect.Hosts
	case s.ReverseProxy != nil:
		return []string{s.ReverseProxy.ReversingHost}
	}
	return nil
}

// Hosts returns every host of every stanza, in order.
func (c *AppConfig) Hosts() []string {
	var hs []string
	for _, s := range c.Stanzas {
		hs = append(hs, s.Hosts()...)
	}
	return hs
}

// InstanceCount is how many units run the stanza: at least one.
func (w *WebApp) InstanceCount() int { return max(1, w.Instances) }
