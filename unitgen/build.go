package unitgen

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	sddbus "github.com/coreos/go-systemd/v22/dbus"

	"github.com/keter-systemd/keter/bundle"
	"github.com/keter-systemd/keter/config"
)

// Defaults for what bundles may override.
const (
	DefaultStopTimeout = 10 * time.Second
	// DefaultWebRestartDelay is short: a crashed app serves nothing until
	// it is back.
	DefaultWebRestartDelay = 100 * time.Millisecond
	// WebStartLimitBurst starts within the window end a crash loop even
	// while keter is not running. At the default delay a 5 s outage of
	// something the app needs costs at most about 50 starts.
	WebStartLimitBurst     = 100
	minWebStartLimitWindow = 60 * time.Second
	minRestartDelay        = 100 * time.Millisecond // systemd's default RestartSec
	infinity               = ^uint64(0)
	stanzaKindWeb          = "web"
	stanzaKindBackground   = "bg"
)

// Unit is everything needed to start one stanza as a transient service.
type Unit struct {
	Name       string
	Meta       Meta
	Properties []sddbus.Property
	// EnvFile is the root-only file the unit loads through
	// EnvironmentFiles; empty when there are no secret variables. The
	// caller writes Secrets there (0600, root) before starting the unit and
	// deletes it with the version.
	EnvFile string
	// Secrets is EnvFile's contents in systemd's EnvironmentFile syntax.
	Secrets []byte
	// Launcher, when set, is the script ExecStart runs (in the version
	// folder); the caller writes LauncherScript there before the start.
	Launcher       string
	LauncherScript []byte
}

// Input is one stanza of one unpacked version of an app.
type Input struct {
	App, Version string
	// Index is the stanza's position in the bundle; it names the stanza
	// ("web0", "bg1") together with its kind.
	Index  int
	Stanza bundle.Stanza // a webapp or background stanza
	Dir    string        // absolute root of the unpacked bundle
	Port   int           // webapps only
	Global *config.Config
	// PluginEnv holds plugin variables (postgres PG*).
	PluginEnv map[string]string
	// LookupEnv reads keter's own environment for forward-env; nil means
	// nothing is forwarded.
	LookupEnv func(string) (string, bool)
	// EnvDir is the root-only folder where env files go.
	EnvDir string
	// StopHook, when set, runs with full privileges after each stop of
	// the unit (the port map's clean-up of the app's front port).
	StopHook []string
	// Operator is the app's operator layer (`keter env set`), the highest:
	// its values go to the root-only EnvFile, never to Environment=.
	Operator map[string]string
	// Instance is 1..N when a webapp stanza runs N > 1 instances: each is
	// a unit of its own, named STANZA.INSTANCE. 0 for the only one.
	Instance int
}

// StanzaName is the STANZA part of unit names: kind plus index.
func StanzaName(t bundle.StanzaType, index int) string {
	if t == bundle.TypeBackground {
		return stanzaKindBackground + strconv.Itoa(index)
	}
	return stanzaKindWeb + strconv.Itoa(index)
}

// Build turns a stanza into a unit. It reports every problem it finds.
func Build(in Input) (Unit, error) { return build(in, nil) }

// build is Build, or with rel the release step run in the stanza's
// sandbox and environment (see Release).
func build(in Input, rel *bundle.Release) (Unit, error) {
	var (
		errs    []error
		exec    bundle.Exec
		sd      bundle.Systemd
		envIn   envInput
		restart []sddbus.Property
	)
	switch {
	case in.Stanza.Type == bundle.TypeWebApp && in.Stanza.WebApp != nil:
		w := in.Stanza.WebApp
		exec, sd = w.Exec, w.Systemd
		if rel == nil && (in.Port < 1 || in.Port > 65535) {
			errs = append(errs, fmt.Errorf("port %d is not a TCP port", in.Port))
		}
		envIn = envInput{web: true, port: in.Port, portVars: w.PortEnvVars}
		if len(w.Hosts) > 0 {
			// A host with an ACME certificate is served over https too.
			envIn.appRoot = AppRoot(w.Hosts[0], w.SSL.Enabled || in.Global != nil && in.Global.ACMEServes(w.Hosts[0]), in.Global)
		}
		restart = webRestart(sd)
	case in.Stanza.Type == bundle.TypeBackground && in.Stanza.Background != nil:
		b := in.Stanza.Background
		exec, sd = b.Exec, b.Systemd
		restart = backgroundRestart(b.RestartCount, b.RestartDelaySeconds)
	case in.Stanza.Type == bundle.TypeScheduled && in.Stanza.Scheduled != nil:
		j := in.Stanza.Scheduled
		exec, sd = j.Exec, j.Systemd
		restart = jobService(j)
	default:
		return Unit{}, fmt.Errorf("building unit for stanza %d of %s: type %q does not run a process", in.Index, in.App, in.Stanza.Type)
	}
	stanza := StanzaName(in.Stanza.Type, in.Index)
	if rel != nil {
		exec.Path, exec.Args, stanza = rel.Exec, rel.Args, ReleaseStanza
		envIn.web, envIn.port, envIn.portVars = false, 0, nil
		restart = backgroundRestart(0, 0)
	}

	meta := Meta{App: in.App, Version: in.Version, Stanza: stanza, Instance: in.Instance}
	if j := in.Stanza.Scheduled; j != nil && rel == nil {
		meta.Stanza, meta.Job = JobStanza(j.Name), j.Name
	}
	name, err := meta.Unit()
	if err != nil {
		errs = append(errs, err)
	}
	if !validApp(in.App) {
		errs = append(errs, fmt.Errorf("app name %q: only letters, digits, '.', '_' and '-' are allowed", in.App))
	}
	if !filepath.IsAbs(in.Dir) {
		errs = append(errs, fmt.Errorf("bundle folder %q is not absolute", in.Dir))
	}
	if exec.Path == "" {
		errs = append(errs, errors.New("exec is empty"))
	}
	bin := exec.Path
	if !filepath.IsAbs(bin) {
		bin = filepath.Join(in.Dir, bin)
	}

	var global map[string]string
	if in.Global != nil {
		global = in.Global.Env
	}
	envIn.global, envIn.plugin = global, in.PluginEnv
	envIn.forward, envIn.lookupEnv = exec.ForwardEnv, in.LookupEnv
	envIn.stanzaEnv, envIn.stanzaName = exec.Env, meta.Stanza
	envIn.operator = in.Operator
	env, err := environment(envIn)
	if err != nil {
		errs = append(errs, err)
	}
	public, secret := split(env)
	if meta.Job != "" {
		public = append(public, "KETER_JOB="+meta.Job)
	}
	envFile := ""
	if len(secret) > 0 {
		if !filepath.IsAbs(in.EnvDir) {
			errs = append(errs, fmt.Errorf("env folder %q is not absolute", in.EnvDir))
		}
		envFile = filepath.Join(in.EnvDir, strings.TrimSuffix(name, suffix)+".env")
	}
	if err := errors.Join(errs...); err != nil {
		return Unit{}, fmt.Errorf("building unit for %s stanza %s: %w", in.App, meta.Stanza, err)
	}

	launcher := filepath.Join(in.Dir, bundle.OwnFilePrefix+"exec-"+strings.TrimSuffix(strings.TrimPrefix(name, Prefix), suffix))
	start, script := execStart(bin, exec.Args, launcher)
	props := []sddbus.Property{
		sddbus.PropDescription(Description(meta)),
		sddbus.PropType("exec"),
		start,
		prop("WorkingDirectory", in.Dir),
		sddbus.PropSlice(Slice),
		collectMode(meta),
		prop("KillMode", "control-group"),
		prop("TimeoutStopUSec", usec(seconds(sd.StopTimeoutSec, DefaultStopTimeout))),
		prop("SyslogIdentifier", Prefix+in.App),
		prop("LogExtraFields", append([][]byte{
			[]byte("KETER_APP=" + meta.App),
			[]byte("KETER_VERSION=" + meta.Version),
			[]byte("KETER_STANZA=" + meta.Stanza),
			[]byte("KETER_INSTANCE=" + strconv.Itoa(meta.InstanceNumber())),
		}, jobField(meta)...)),
		prop("StateDirectory", []string{Prefix + in.App}),
	}
	props = append(props, restart...)
	// The state directory's path as a privileged command sees it.
	stateDir := "/var/lib/private/" + Prefix + in.App
	if in.Global != nil && in.Global.Setuid != "" {
		props = append(props, prop("User", in.Global.Setuid))
		stateDir = "/var/lib/" + Prefix + in.App
	} else {
		props = append(props, prop("DynamicUser", true), prop("User", userName(in.App)))
	}
	hooks := "/"
	if in.Global != nil {
		hooks = in.Global.Hooks()
	}
	props = append(props, ownFolder(hooks, in.Dir, stateDir))
	props = append(props, isolation(in)...)
	if len(in.StopHook) > 0 {
		props = append(props, stopHook(in.StopHook))
	}
	if len(public) > 0 {
		props = append(props, prop("Environment", public))
	}
	if envFile != "" {
		props = append(props, prop("EnvironmentFiles", []envFileRef{{envFile, false}}))
	}
	props = append(props, hardening(MemoryDenyWriteExecute(sd))...)
	props = append(props, limits(sd)...)
	props = append(props, accounting()...)

	u := Unit{Name: name, Meta: meta, Properties: props, EnvFile: envFile}
	if script != nil {
		u.Launcher, u.LauncherScript = launcher, script
	}
	if envFile != "" {
		u.Secrets = EnvFile(secret)
	}
	return u, nil
}

// envFileRef is the D-Bus shape (sb) of one EnvironmentFiles entry.
type envFileRef struct {
	Path     string
	Optional bool
}

// execCmd is the D-Bus shape (sasb) of ExecStart: the last field is
// ignore-failure.
type execCmd struct {
	Path   string
	Args   []string
	Ignore bool
}

// execStart runs bin with args as Keter does: no shell, every argument as
// it is. systemd would expand "$FOO" and "%n" in a command line, and
// systemd 252 writes other characters back into the transient unit file
// in ways its own parser misreads at the next daemon-reload; so a command
// with anything but plain characters goes through a launcher script
// (returned, for the caller to write at launcher) that execs it.
func execStart(bin string, args []string, launcher string) (sddbus.Property, []byte) {
	argv := append([]string{bin}, args...)
	if !slices.ContainsFunc(argv, func(a string) bool { return strings.IndexFunc(a, unplain) >= 0 }) {
		return prop("ExecStart", []execCmd{{bin, argv, false}}), nil
	}
	var script strings.Builder
	script.WriteString("# Written by keter: runs the stanza's exec with its args as they are.\nexec")
	for _, a := range argv {
		script.WriteString(" '" + strings.ReplaceAll(a, "'", `'\''`) + "'")
	}
	script.WriteString("\n")
	return prop("ExecStart", []execCmd{{"/bin/sh", []string{"/bin/sh", launcher}, false}}), []byte(script.String())
}

// unplain reports a rune systemd's command-line syntax treats specially,
// or might.
func unplain(r rune) bool {
	return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("/._-+=,:@", r))
}

func webRestart(sd bundle.Systemd) []sddbus.Property {
	delay := seconds(sd.RestartDelaySec, DefaultWebRestartDelay)
	window := max(minWebStartLimitWindow, 10*delay)
	return []sddbus.Property{
		prop("Restart", "always"),
		prop("RestartUSec", usec(delay)),
		prop("StartLimitBurst", uint32(WebStartLimitBurst)),
		prop("StartLimitIntervalUSec", usec(window)),
	}
}

// backgroundRestart follows Keter's restart-count: negative is unlimited,
// N > 0 allows N restarts after the first start, 0 none.
func backgroundRestart(count, delaySec int) []sddbus.Property {
	delay := max(time.Duration(delaySec)*time.Second, minRestartDelay)
	switch {
	case count < 0:
		return []sddbus.Property{
			prop("Restart", "always"),
			prop("RestartUSec", usec(delay)),
			prop("StartLimitIntervalUSec", uint64(0)), // no rate limit
		}
	case count == 0:
		return []sddbus.Property{prop("Restart", "no")}
	}
	return []sddbus.Property{
		prop("Restart", "always"),
		prop("RestartUSec", usec(delay)),
		prop("StartLimitBurst", uint32(min(count, 1<<31-2)+1)),
		prop("StartLimitIntervalUSec", infinity),
	}
}

// DefaultMemoryDenyWriteExecute is W^X for stanzas that do not choose
// (systemd: memory-deny-write-execute, or allow-jit): off, because JIT
// runtimes (Node.js, the JVM, PHP's PCRE JIT) crash or stop under it.
const DefaultMemoryDenyWriteExecute = false

// MemoryDenyWriteExecute reports whether a stanza's units run with W^X:
// its own choice, else the default.
func MemoryDenyWriteExecute(sd bundle.Systemd) bool {
	if sd.MemoryDenyWriteExecute != nil {
		return *sd.MemoryDenyWriteExecute
	}
	return DefaultMemoryDenyWriteExecute
}

func limits(sd bundle.Systemd) []sddbus.Property {
	var ps []sddbus.Property
	if sd.MemoryMax > 0 {
		ps = append(ps, prop("MemoryMax", sd.MemoryMax))
	}
	if sd.CPUQuotaPercent > 0 {
		// 100% is one CPU: 1 s of CPU time per second.
		ps = append(ps, prop("CPUQuotaPerSecUSec", uint64(sd.CPUQuotaPercent)*10_000))
	}
	if sd.TasksMax > 0 {
		ps = append(ps, prop("TasksMax", sd.TasksMax))
	}
	return ps
}

func seconds(s uint32, def time.Duration) time.Duration {
	if s == 0 {
		return def
	}
	return time.Duration(s) * time.Second
}

func usec(d time.Duration) uint64 { return uint64(d / time.Microsecond) }

func validApp(app string) bool {
	if app == "" || app == "." || app == ".." {
		return false
	}
	for i := 0; i < len(app); i++ {
		if !keep(app[i], true) {
			return false
		}
	}
	return true
}
