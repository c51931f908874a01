package unitgen

import (
	_ "embed"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
)

// Sleeping apps. A webapp stanza with idle-stop runs each instance behind
// a transient socket unit that holds the instance's port (the one the
// port map sends its front to) whether the app runs or not: a request to
// a sleeping app waits in the kernel's accept queue while systemd starts
// it. Two shapes:
//
//   - socket-activation: the socket keter-app-…-web0.socket starts the
//     app's own service keter-app-…-web0.service, which takes the
//     listening socket (LISTEN_FDS=1, fd 3). keter stops the service
//     after idle-stop without a connection.
//   - otherwise a proxy: the socket keter-app-…-web0\x2dproxy.socket
//     starts keter-app-…-web0\x2dproxy.service, systemd-socket-proxyd,
//     which pulls the app in (Requires, After), waits until the app
//     accepts on its own private port (Inner), then forwards. The proxy
//     exits after idle-stop without a connection (--exit-idle-time) and
//     the app, StopWhenUnneeded, stops with it: systemd does the idling.
//
// In both the port map's stop hook runs when the socket stops, not the
// service: an app asleep keeps its front.

// ProxyStanzaSuffix ends the STANZA of a sleeping app's proxy units.
const ProxyStanzaSuffix = "-proxy"

// SocketSuffix ends a socket unit's name.
const SocketSuffix = ".socket"

// SocketProxyd is systemd's socket proxy (package systemd on Debian 12).
var SocketProxyd = "/lib/systemd/systemd-socket-proxyd"

// WaitPortFile is the wait-port script's name in the hooks folder.
const WaitPortFile = "wait-port"

// WaitPortScript waits until a port accepts (see wait-port.sh).
//
//go:embed wait-port.sh
var WaitPortScript string

// Sleeper is one instance of a webapp stanza that sleeps when idle: its
// socket, started with App (and Proxy) as auxiliary units that it starts
// on the first connection.
type Sleeper struct {
	Socket           string
	SocketProperties []sddbus.Property
	App              Unit
	// Proxy is nil when the app takes the socket itself.
	Proxy *Unit
	// Inner is the app's own port behind the proxy; 0 without one.
	Inner int
}

// Units are the services to create with the socket, in the order
// StartTransientUnit takes them.
func (s Sleeper) Units() []Unit {
	if s.Proxy != nil {
		return []Unit{*s.Proxy, s.App}
	}
	return []Unit{s.App}
}

// Sleep builds a sleeping instance of a webapp stanza: the socket holds
// in.Port and runs in.StopHook when it stops; idle is idle-stop; inner is
// the app's own port behind the proxy, unused with socket-activation.
func Sleep(in Input, idle time.Duration, inner int) (Sleeper, error) {
	w := in.Stanza.WebApp
	if w == nil {
		return Sleeper{}, fmt.Errorf("building socket for stanza %d of %s: not a webapp", in.Index, in.App)
	}
	if idle <= 0 {
		return Sleeper{}, errors.New("building socket: idle-stop must be positive")
	}
	port, hook := in.Port, in.StopHook
	in.StopHook = nil // the socket's: an idle stop of the service keeps the front
	if !w.SocketActivation {
		if inner < 1 || inner > 65535 {
			return Sleeper{}, fmt.Errorf("building proxy for %s: inner port %d is not a TCP port", in.App, inner)
		}
		in.Port = inner
	}
	app, err := Build(in)
	if err != nil {
		return Sleeper{}, err
	}
	s := Sleeper{App: app}
	if s.Socket, _, err = SleeperNames(app.Meta, w.SocketActivation); err != nil {
		return Sleeper{}, err
	}
	meta := app.Meta
	if !w.SocketActivation {
		s.Inner = inner
		s.App.Properties = append(s.App.Properties, prop("StopWhenUnneeded", true))
		px, err := proxy(in, app, idle, inner)
		if err != nil {
			return Sleeper{}, err
		}
		s.Proxy, meta = &px, px.Meta
	}
	s.SocketProperties = []sddbus.Property{
		sddbus.PropDescription(Description(meta)),
		prop("Listen", []listen{{"Stream", "127.0.0.1:" + strconv.Itoa(port)}}),
		prop("Accept", false),
		// Room for a burst of first requests while the app starts.
		prop("Backlog", uint32(4096)),
		collectMode(meta),
	}
	if len(hook) > 0 {
		// A socket's commands run as root; systemd 252 takes no Ex
		// commands for sockets. Ignore-failure, as the service's hook.
		s.SocketProperties = append(s.SocketProperties, prop("ExecStopPost", []execCmd{{hook[0], hook, true}}))
	}
	return s, nil
}

// listen is the D-Bus shape (ss) of a socket's Listen entry.
type listen struct {
	Type, Address string
}

// proxy is systemd-socket-proxyd in front of app, in a sandbox of its own.
func proxy(in Input, app Unit, idle time.Duration, inner int) (Unit, error) {
	meta := app.Meta
	meta.Stanza += ProxyStanzaSuffix
	name, err := meta.Unit()
	if err != nil {
		return Unit{}, fmt.Errorf("building proxy for %s: %w", in.App, err)
	}
	hooks := "/"
	if in.Global != nil {
		hooks = in.Global.Hooks()
	}
	target := "127.0.0.1:" + strconv.Itoa(inner)
	idleArg := "--exit-idle-time=" + strconv.FormatInt(max(idle.Milliseconds(), 1), 10) + "ms"
	wait := filepath.Join(hooks, WaitPortFile)
	start := time.Duration(in.Stanza.WebApp.EnsureAliveTimeBound) * time.Microsecond
	if start <= 0 {
		start = 90 * time.Second
	}
	props := []sddbus.Property{
		sddbus.PropDescription(Description(meta)),
		sddbus.PropType("exec"),
		// Privileged: the hooks folder is under ROOT/etc, which only root reads.
		prop("ExecStartPreEx", []execEx{{"/bin/bash", []string{"/bin/bash", wait, strconv.Itoa(inner), app.Name}, []string{"privileged"}}}),
		prop("ExecStart", []execCmd{{SocketProxyd, []string{SocketProxyd, idleArg, target}, false}}),
		prop("Requires", []string{app.Name}),
		prop("After", []string{app.Name}),
		sddbus.PropSlice(Slice),
		collectMode(meta),
		prop("TimeoutStartUSec", usec(start)),
		prop("SyslogIdentifier", Prefix+in.App),
		prop("LogExtraFields", [][]byte{
			[]byte("KETER_APP=" + meta.App),
			[]byte("KETER_VERSION=" + meta.Version),
			[]byte("KETER_STANZA=" + meta.Stanza),
			[]byte("KETER_INSTANCE=" + strconv.Itoa(meta.InstanceNumber())),
		}),
		prop("DynamicUser", true),
		prop("User", userName(in.App)),
	}
	props = append(props, hardening(false)...)
	return Unit{Name: name, Meta: meta, Properties: props}, nil
}

// SleeperNames are the socket and proxy unit names of a sleeping
// instance whose app unit has meta m; proxy is empty with
// socket-activation.
func SleeperNames(m Meta, socketActivation bool) (socket, proxy string, err error) {
	app, err := m.Unit()
	if err != nil {
		return "", "", err
	}
	if socketActivation {
		return strings.TrimSuffix(app, suffix) + SocketSuffix, "", nil
	}
	m.Stanza += ProxyStanzaSuffix
	if proxy, err = m.Unit(); err != nil {
		return "", "", err
	}
	return strings.TrimSuffix(proxy, suffix) + SocketSuffix, proxy, nil
}
