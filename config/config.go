// Package config reads keter-config.yaml, the daemon's global settings, in
// the Haskell Keter's spelling plus our documented additions. It owns
// decoding, defaults and validation; it must not touch the system.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// Config is keter-config.yaml after defaults are applied.
type Config struct {
	Root                string            `yaml:"root"`
	Listeners           []Listener        `yaml:"listeners"`
	GracefulDrainMicros int64             `yaml:"graceful-drain-micros"`
	Setuid              string            `yaml:"setuid"`
	IPFromHeader        bool              `yaml:"ip-from-header"`
	ExternalHTTPPort    int               `yaml:"external-http-port"`
	ExternalHTTPSPort   int               `yaml:"external-https-port"`
	Env                 map[string]string `yaml:"env"`
	// ConnectionTimeBound is in milliseconds as in Keter; 0 means no bound.
	ConnectionTimeBound        int64       `yaml:"connection-time-bound"`
	UnknownHostResponseFile    string      `yaml:"unknown-host-response-file"`
	MissingHostResponseFile    string      `yaml:"missing-host-response-file"`
	ProxyExceptionResponseFile string      `yaml:"proxy-exception-response-file"`
	HealthcheckPath            string      `yaml:"healthcheck-path"`
	PortManager                PortManager `yaml:"port-manager"`

	// Our additions.
	Nginx       Nginx    `yaml:"nginx"`
	Postgres    Postgres `yaml:"postgres"`
	Status      Status   `yaml:"status"`
	KeepBundles int      `yaml:"keep-bundles"`
	// DeployGroup is the operators' group: its members may drop bundles
	// into incoming/ and use the CLI's deploy, status and rollback.
	DeployGroup string `yaml:"deploy-group"`
	// MaxUnpackedBytes bounds one bundle's unpacked size.
	MaxUnpackedBytes int64 `yaml:"max-unpacked-bytes"`
	ACME             ACME  `yaml:"acme"`
	// TrustedProxies are the addresses (CIDRs) whose X-Forwarded-For and
	// X-Forwarded-Proto nginx believes (proxies.go).
	TrustedProxies []string `yaml:"trusted-proxies"`
	// IdleStop is the host's default idle-stop for webapp stanzas that
	// do not set theirs; 0 (the default): apps never sleep.
	IdleStop Duration `yaml:"idle-stop"`
}

// Listener is one address nginx listens on; Certificate and Key together
// make it HTTPS.
type Listener struct {
	Host              string   `yaml:"host"`
	Port              int      `yaml:"port"`
	Certificate       string   `yaml:"certificate"`
	Key               string   `yaml:"key"`
	ChainCertificates []string `yaml:"chain-certificates"`
	Session           bool     `yaml:"session"`
	// ACME makes it HTTPS with a certificate from the acme CA per host.
	ACME bool `yaml:"acme"`
}

// Secure reports whether the listener serves TLS.
func (l Listener) Secure() bool { return l.Certificate != "" || l.ACME }

// PortManager is Keter's key; Keter ignores its contents, we honour
// `ranges` and `reserve`.
type PortManager struct {
	Ranges []PortRange `yaml:"ranges"`
	// Reserve adds Ranges to the kernel's ip_local_reserved_ports so
	// outgoing connections never take an app's port (default true).
	Reserve *bool `yaml:"reserve"`
}

// Reserving reports whether keter reserves its ports with the kernel.
func (p PortManager) Reserving() bool { return p.Reserve == nil || *p.Reserve }

// PortRange is an inclusive range of local ports for apps.
type PortRange struct {
	From int `yaml:"from"`
	To   int `yaml:"to"`
}

// Nginx selects how keter drives nginx.
type Nginx struct {
	Mode   string `yaml:"mode"`   // managed | system
	Binary string `yaml:"binary"` // default /usr/sbin/nginx
	// IncludeFile is where system mode writes its config.
	IncludeFile string `yaml:"include-file"`
	// Service is the nginx unit keter reloads: the system's own in system
	// mode (nginx.service), the one keter runs in managed mode
	// (keter-nginx.service; name another to run two keters on one host).
	Service string `yaml:"service"`
	// ClientMaxBodySize is nginx's client_max_body_size, e.g. "100m".
	ClientMaxBodySize string `yaml:"client-max-body-size"`
	// Switch is how a new version takes over: "map" (an nftables DNAT map
	// behind a stable port, no nginx reload), "reload" (nginx reloaded
	// with the new port), or "auto": map where nftables works.
	Switch string `yaml:"switch"`
	// NftTable is the nftables table of the map (name another to run two
	// keters on one host).
	NftTable string `yaml:"nft-table"`
}

// Postgres is keter's admin connection for the postgres plugin.
type Postgres struct {
	DSN string `yaml:"dsn"`
}

// Status is the read-only status page and the CLI socket.
type Status struct {
	Listen string `yaml:"listen"` // "" or "off" disables the page
	Socket string `yaml:"socket"` // unix socket for the CLI
	// RemoteLogs shows app log lines on the page to callers keter cannot
	// identify (those on other hosts, when listen is not a loopback
	// address): anyone who reaches the address reads every app's logs.
	// Callers on this host are judged by their user either way.
	RemoteLogs bool `yaml:"remote-logs"`
}

const (
	ModeManaged = "managed"
	ModeSystem  = "system"

	SwitchAuto   = "auto"
	SwitchMap    = "map"
	SwitchReload = "reload"
)

// DefaultDeployGroup is the operators' group the Debian package makes.
const DefaultDeployGroup = "keter"

// DefaultPortRanges are the Haskell Keter's port pool ranges.
var DefaultPortRanges = []PortRange{
	{43124, 44320}, {28120, 29166}, {45967, 46997}, {28241, 29117}, {40001, 40840},
	{29170, 29998}, {38866, 39680}, {43442, 44122}, {41122, 41793}, {35358, 36000},
}

var nftName = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]{0,31}$`)

// Warning is a non-fatal finding while loading, such as an unknown key.
type Warning string

// Load reads, defaults and validates the config file at path. Relative
// paths resolve against the file's folder. Unknown keys come back as
// warnings that name the key.
func Load(path string) (*Config, []Warning, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("reading keter config: %w", err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, nil, err
	}
	return Parse(data, filepath.Dir(abs))
}

// Parse is Load on bytes, with dir as the folder relative paths resolve to.
func Parse(data []byte, dir string) (*Config, []Warning, error) {
	var c Config
	var raw map[string]yaml.Node
	if err := yaml.Unmarshal(data, &raw); err != nil {
		return nil, nil, fmt.Errorf("parsing keter config: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&c); err != nil {
		return nil, nil, fmt.Errorf("parsing keter config: %w", err)
	}
	warns := unknownKeys(raw)
	var legacy legacyListen
	if err := yaml.Unmarshal(data, &legacy); err != nil {
		return nil, warns, fmt.Errorf("parsing keter config's Keter 0.x keys (host, port, ssl): %w", err)
	}
	var legacyErr error
	switch {
	case legacy.given() && len(c.Listeners) > 0:
		warns = append(warns, Warning("keys host, port and ssl (Keter 0.x) are ignored: listeners is given, and wins as in Keter"))
	case legacy.given():
		c.Listeners, legacyErr = legacy.listeners()
	}
	c.applyDefaults(dir)
	warns = append(warns, c.proxyWarnings()...)
	if err := errors.Join(legacyErr, c.Validate()); err != nil {
		return nil, warns, err
	}
	return &c, warns, nil
}

func unknownKeys(raw map[string]yaml.Node) []Warning {
	known := map[string]bool{}
	t := reflectYAMLKeys(Config{})
	for _, k := range t {
		known[k] = true
	}
	// Keter keys we accept and deliberately ignore, and Keter 0.x's
	// listener keys.
	for _, k := range append([]string{"rotate-logs", "cli-port", "app-crash-hook"}, legacyKeys...) {
		known[k] = true
	}
	var ws []Warning
	keys := make([]string, 0, len(raw))
	for k := range raw {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		switch {
		case !known[k]:
			ws = append(ws, Warning(fmt.Sprintf("unknown key %q in keter config is ignored", k)))
		case k == "rotate-logs" || k == "cli-port":
			ws = append(ws, Warning(fmt.Sprintf("key %q has no effect: app and keter logs go to journald", k)))
		case k == "app-crash-hook":
			ws = append(ws, Warning(`key "app-crash-hook" is ignored; use "healthcheck-path"`))
		}
	}
	return ws
}

func (c *Config) applyDefaults(dir string) {
	if c.Root != "" && !filepath.IsAbs(c.Root) {
		c.Root = filepath.Join(dir, c.Root)
	}
	c.Root = filepath.Clean(c.Root)
	if len(c.Listeners) == 0 {
		c.Listeners = []Listener{{Host: "*", Port: 80}}
	}
	for i := range c.Listeners {
		l := &c.Listeners[i]
		if l.Host == "" {
			l.Host = "*"
		}
		if l.Port == 0 {
			l.Port = 80
			if l.Secure() {
				l.Port = 443
			}
		}
		l.Certificate = resolve(dir, l.Certificate)
		l.Key = resolve(dir, l.Key)
		for j, cc := range l.ChainCertificates {
			l.ChainCertificates[j] = resolve(dir, cc)
		}
	}
	if c.GracefulDrainMicros == 0 {
		c.GracefulDrainMicros = 20_000_000
	}
	if c.ExternalHTTPPort == 0 {
		c.ExternalHTTPPort = 80
	}
	if c.ExternalHTTPSPort == 0 {
		c.ExternalHTTPSPort = 443
	}
	if c.ConnectionTimeBound == 0 {
		c.ConnectionTimeBound = 300_000
	}
	c.UnknownHostResponseFile = resolve(dir, c.UnknownHostResponseFile)
	c.MissingHostResponseFile = resolve(dir, c.MissingHostResponseFile)
	c.ProxyExceptionResponseFile = resolve(dir, c.ProxyExceptionResponseFile)
	if len(c.PortManager.Ranges) == 0 {
		c.PortManager.Ranges = DefaultPortRanges
	}
	if c.Nginx.Mode == "" {
		c.Nginx.Mode = ModeManaged
	}
	if c.Nginx.Binary == "" {
		c.Nginx.Binary = "/usr/sbin/nginx"
	}
	if c.Nginx.IncludeFile == "" {
		c.Nginx.IncludeFile = "/etc/nginx/conf.d/keter.conf"
	}
	if c.Nginx.Service == "" {
		c.Nginx.Service = "keter-nginx.service"
		if c.Nginx.Mode == ModeSystem {
			c.Nginx.Service = "nginx.service"
		}
	}
	if c.Nginx.Switch == "" {
		c.Nginx.Switch = SwitchAuto
	}
	if c.Nginx.NftTable == "" {
		c.Nginx.NftTable = "keter"
	}
	if c.Nginx.ClientMaxBodySize == "" {
		c.Nginx.ClientMaxBodySize = "100m"
	}
	if c.Postgres.DSN == "" {
		c.Postgres.DSN = "host=/var/run/postgresql"
	}
	if c.Status.Listen == "" {
		c.Status.Listen = "127.0.0.1:9394"
	}
	if c.Status.Socket == "" {
		c.Status.Socket = filepath.Join(c.Root, "etc", "keter.sock")
	}
	if c.KeepBundles == 0 {
		c.KeepBundles = 3
	}
	if c.DeployGroup == "" {
		c.DeployGroup = DefaultDeployGroup
	}
	if c.MaxUnpackedBytes == 0 {
		c.MaxUnpackedBytes = 2 << 30
	}
	if c.ACME.Directory == "" {
		c.ACME.Directory = LetsEncrypt
	}
	c.ACME.TrustedRoots = resolve(dir, c.ACME.TrustedRoots)
}

func resolve(dir, p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(dir, p)
}

// unsafePathRune reports a rune that systemd's command-line syntax
// would treat specially (or that a shell would) in a unit's argument.
func unsafePathRune(r rune) bool {
	return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("/._-+", r))
}

// Validate reports every problem at once.
func (c *Config) Validate() error {
	var errs []error
	if c.Root == "" || c.Root == "." {
		errs = append(errs, errors.New("root: required (the folder holding incoming/, temp/ and etc/)"))
	} else if i := strings.IndexFunc(c.Root, unsafePathRune); i >= 0 {
		errs = append(errs, fmt.Errorf("root: %q holds %q: units run commands under root, and systemd rewrites such characters in their command lines; use letters, digits and / . _ - +", c.Root, c.Root[i:i+1]))
	}
	for i, l := range c.Listeners {
		if l.Port < 1 || l.Port > 65535 {
			errs = append(errs, fmt.Errorf("listeners[%d].port: %d is not a TCP port", i, l.Port))
		}
		if (l.Certificate == "") != (l.Key == "") {
			errs = append(errs, fmt.Errorf("listeners[%d]: certificate and key must be given together", i))
		}
	}
	if c.GracefulDrainMicros < 0 {
		errs = append(errs, errors.New("graceful-drain-micros: must not be negative"))
	}
	if c.Nginx.Mode != ModeManaged && c.Nginx.Mode != ModeSystem {
		errs = append(errs, fmt.Errorf("nginx.mode: %q is neither %q nor %q", c.Nginx.Mode, ModeManaged, ModeSystem))
	}
	switch c.Nginx.Switch {
	case SwitchAuto, SwitchMap, SwitchReload:
	default:
		errs = append(errs, fmt.Errorf("nginx.switch: %q is none of %q, %q, %q", c.Nginx.Switch, SwitchAuto, SwitchMap, SwitchReload))
	}
	if !nftName.MatchString(c.Nginx.NftTable) {
		errs = append(errs, fmt.Errorf("nginx.nft-table: %q is not a table name (letters, digits, _, up to 32)", c.Nginx.NftTable))
	}
	for i, r := range c.PortManager.Ranges {
		if r.From < 1024 || r.To > 65535 || r.From > r.To {
			errs = append(errs, fmt.Errorf("port-manager.ranges[%d]: %d-%d is not a range within 1024-65535", i, r.From, r.To))
		}
	}
	if c.KeepBundles < 0 {
		errs = append(errs, errors.New("keep-bundles: must not be negative"))
	}
	if c.IdleStop < 0 {
		errs = append(errs, errors.New("idle-stop: must not be negative"))
	}
	errs = append(errs, c.validateACME()...)
	errs = append(errs, c.validateProxies()...)
	return errors.Join(errs...)
}

// Hooks is the folder of the scripts units run (ExecStartPre/ExecStopPost).
func (c *Config) Hooks() string { return filepath.Join(c.Root, "etc", "hooks") }

// Incoming, Temp and Etc are Keter's root layout.
func (c *Config) Incoming() string { return filepath.Join(c.Root, "incoming") }
func (c *Config) Temp() string     { return filepath.Join(c.Root, "temp") }
func (c *Config) Etc() string      { return filepath.Join(c.Root, "etc") }
