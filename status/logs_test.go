package status

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/keter-systemd/keter/app"
	"github.com/keter-systemd/keter/internal/testkit"
	"github.com/keter-systemd/keter/unitgen"
)

// What the fixture's apps logged: web's live unit (journal) and down's
// failed deploy (its last lines).
const (
	journalMark = "from keter-app-web-v9-web0.service"
	lastLogMark = "last-log-line of down"
)

func logFixture() (*fakeCore, fakeUnits) {
	core := &fakeCore{apps: []app.AppStatus{
		{Name: "web", LastResult: "live", Live: &app.VersionStatus{Version: "v9", Digest: "d", Hosts: []string{"web.test"}, Units: []string{"keter-app-web-v9-web0.service"}}},
		{Name: "down", LastResult: "failed", LastError: "boom", LastLog: []string{lastLogMark}},
	}}
	units := fakeUnits{units: []unitgen.Status{
		{Name: "keter-app-web-v9-web0.service", Meta: unitgen.Meta{App: "web", Version: "v9", Stanza: "web0"}, ActiveState: "active", SubState: "running"},
	}}
	return core, units
}

// logPaths are every page of the TCP listener and, for those that show
// log lines to whoever may read them, the line each must show.
var logPaths = []struct {
	path  string
	lines []string // shown to allowed callers, absent for the others
	json  bool
	rest  string // shown to everyone
}{
	{"/", []string{journalMark, lastLogMark}, false, `class="version">v9<`},
	{"/api/apps", []string{lastLogMark}, true, `"version": "v9"`},
	{"/api/apps?log=5", []string{journalMark, lastLogMark}, true, `"version": "v9"`},
	{"/api/apps/web?log=5", []string{journalMark}, true, `"version": "v9"`},
	{"/api/apps/down", []string{lastLogMark}, true, `"last_error": "boom"`},
	{"/metrics", nil, false, `keter_apps{state="live"} 1`}, // never any log lines
	{"/api/keter", nil, true, `"version": "test"`},
}

// checkLogs fetches every page through get and checks the log lines are
// there when shown and absent, with the reason why, otherwise; the rest
// of the page is there either way.
func checkLogs(t *testing.T, get func(path string) (int, string), shown bool, why string) {
	t.Helper()
	for _, p := range logPaths {
		code, body := get(p.path)
		if code != 200 {
			t.Errorf("%s: %d, want 200:\n%.400s", p.path, code, body)
			continue
		}
		for _, l := range p.lines {
			if got := strings.Contains(body, l); got != shown {
				t.Errorf("%s: has %q: %v, want %v:\n%.1500s", p.path, l, got, shown, body)
			}
		}
		if !strings.Contains(body, p.rest) {
			t.Errorf("%s lacks %s:\n%.1500s", p.path, p.rest, body)
		}
		if p.lines == nil {
			for _, l := range []string{journalMark, lastLogMark, "log_hidden"} {
				if strings.Contains(body, l) {
					t.Errorf("%s has %q, which it never shows:\n%.1500s", p.path, l, body)
				}
			}
			continue
		}
		var reason string
		switch {
		case shown:
		case p.json:
			reason = fmt.Sprintf(`"log_hidden": %q`, why)
		default:
			reason = `<p class="log-hidden">` + why + `</p>`
		}
		if has := strings.Contains(body, "log_hidden") || strings.Contains(body, `class="log-hidden"`); has == shown || !strings.Contains(body, reason) {
			t.Errorf("%s: want the reason %q exactly when log lines are hidden:\n%.1500s", p.path, reason, body)
		}
	}
}

func TestLogPolicy(t *testing.T) {
	for _, tc := range []struct {
		name   string
		p      logPolicy
		c      caller
		hidden string
	}{
		{"root on this host", logPolicy{deployGroup: "keter"}, caller{local: true, uid: 0}, ""},
		{"a user in no group", logPolicy{deployGroup: "keter"}, caller{local: true, uid: 4242424}, "log lines are shown to root and members of keter, adm or systemd-journal"},
		{"without a deploy group", logPolicy{}, caller{local: true, uid: 4242424}, "log lines are shown to root and members of adm or systemd-journal"},
		{"another host", logPolicy{deployGroup: "keter"}, caller{}, "log lines are not shown to other hosts: keter cannot tell who is asking (status.remote-logs turns them on)"},
		{"another host with remote-logs", logPolicy{deployGroup: "keter", remote: true}, caller{}, ""},
		{"a user in no group with remote-logs", logPolicy{deployGroup: "keter", remote: true}, caller{local: true, uid: 4242424}, "log lines are shown to root and members of keter, adm or systemd-journal"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.p.hidden(tc.c); got != tc.hidden {
				t.Fatalf("hidden %q, want %q", got, tc.hidden)
			}
		})
	}
	if got := logsHidden(t.Context()); got == "" {
		t.Fatal("a request nobody judged reads log lines")
	}
}

// TestLogLinesByUser: over TCP on loopback, root and members of the
// deploy group, adm and systemd-journal read the apps' log lines; any
// other user gets the rest without them, also with remote-logs on; apps
// get nothing; /metrics has none for anyone.
func TestLogLinesByUser(t *testing.T) {
	if os.Geteuid() != 0 {
		testkit.Missing(t, "reading the page as other users needs root")
	}
	curl := testkit.NeedBinary(t, "curl", "apt-get install curl")
	ensureGroup(t, "systemd-journal")
	deploy := addGroup(t)
	members := map[string]string{
		"deploy group":              addUser(t, "-G", deploy),
		"deploy group as primary":   addUser(t, "-g", deploy),
		"adm":                       addUser(t, "-G", "adm"),
		"systemd-journal":           addUser(t, "-G", "systemd-journal"),
		"systemd-journal and other": addUser(t, "-G", addGroup(t)+",systemd-journal"),
	}
	stranger := addUser(t, "-G", addGroup(t))
	why := "log lines are shown to root and members of " + deploy + ", adm or systemd-journal"

	core, units := logFixture()
	s, c := startServer(t, core, units, func(o *Options) { o.DeployGroup = deploy })
	base := "http://" + s.Addr().String()

	t.Run("root", func(t *testing.T) {
		checkLogs(t, func(p string) (int, string) { return get(t, base+p) }, true, "")
	})
	for name, u := range members {
		t.Run(name, func(t *testing.T) {
			checkLogs(t, func(p string) (int, string) { return curlAs(t, curl, u, base+p) }, true, "")
		})
	}
	for name, u := range map[string]string{"nobody": "nobody", "another group": stranger} {
		t.Run(name, func(t *testing.T) {
			checkLogs(t, func(p string) (int, string) { return curlAs(t, curl, u, base+p) }, false, why)
		})
	}
	t.Run("socket", func(t *testing.T) {
		a, err := c.App(t.Context(), "web", 5)
		if err != nil || len(a.Log) != 1 || !strings.Contains(a.Log[0], journalMark) || a.LogHidden != "" {
			t.Fatalf("app over the socket: %+v %v, want its log lines", a, err)
		}
	})
	t.Run("nobody with remote-logs", func(t *testing.T) {
		s, _ := startServer(t, core, units, func(o *Options) { o.DeployGroup = deploy; o.RemoteLogs = true })
		checkLogs(t, func(p string) (int, string) { return curlAs(t, curl, "nobody", "http://"+s.Addr().String()+p) }, false, why)
	})
	t.Run("app", func(t *testing.T) {
		for _, p := range logPaths {
			out, err := testkit.InCgroup(t, curl+" -s -w '\\n%{http_code}' '"+base+p.path+"'", func(path string) {
				s.guard.mu.Lock()
				s.guard.slice, s.guard.ids = path, nil
				s.guard.mu.Unlock()
			})
			if err != nil || !strings.HasSuffix(out, "\n403") || strings.Contains(out, journalMark) || strings.Contains(out, lastLogMark) {
				t.Errorf("an app fetching %s: %v %q, want 403", p.path, err, out)
			}
		}
	})
}

// TestLogLinesToOtherHosts: a listener on a non-loopback address, in a
// network namespace of the test's own with its client, where keter's
// sock_diag cannot find the client: log lines only with remote-logs.
func TestLogLinesToOtherHosts(t *testing.T) {
	if os.Geteuid() != 0 {
		testkit.Missing(t, "a network namespace needs root")
	}
	curl := testkit.NeedBinary(t, "curl", "apt-get install curl")
	ns, addr := netns(t)
	core, units := logFixture()
	for _, remote := range []bool{false, true} {
		t.Run(fmt.Sprintf("remote-logs=%v", remote), func(t *testing.T) {
			s := newServer(t, core, units, func(o *Options) { o.Listen = addr + ":0"; o.RemoteLogs = remote })
			if err := inNetns(ns, s.Listen); err != nil {
				t.Fatal(err)
			}
			if s.Addr() == nil {
				t.Fatalf("no listener on %s in %s", addr, ns)
			}
			serve(t, s)
			base := "http://" + s.Addr().String()
			checkLogs(t, func(p string) (int, string) {
				return run(t, exec.Command("ip", "netns", "exec", ns, curl, "-s", "-w", "\n%{http_code}", base+p))
			}, remote, "log lines are not shown to other hosts: keter cannot tell who is asking (status.remote-logs turns them on)")
		})
	}
}

// curlAs fetches url as user (its uid, gid and groups).
func curlAs(t *testing.T, curl, name, url string) (int, string) {
	t.Helper()
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	gids, err := u.GroupIds()
	if err != nil {
		t.Fatal(err)
	}
	cred := &syscall.Credential{Uid: atoi(t, u.Uid), Gid: atoi(t, u.Gid)}
	for _, g := range gids {
		cred.Groups = append(cred.Groups, atoi(t, g))
	}
	cmd := exec.Command(curl, "-s", "-w", "\n%{http_code}", url)
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	return run(t, cmd)
}

// run runs a curl command that printed its status code last.
func run(t *testing.T, cmd *exec.Cmd) (int, string) {
	t.Helper()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	i := bytes.LastIndexByte(out, '\n')
	if err != nil || i < 0 {
		t.Fatalf("%v: %v %s", cmd.Args, err, stderr.Bytes())
	}
	code, err := strconv.Atoi(string(out[i+1:]))
	if err != nil {
		t.Fatalf("%v: no status code in %q", cmd.Args, out)
	}
	return code, string(out[:i])
}

func atoi(t *testing.T, s string) uint32 {
	t.Helper()
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		t.Fatal(err)
	}
	return uint32(n)
}

// admin runs a user or group command, again while another one holds the
// database's lock.
func admin(t *testing.T, args ...string) {
	t.Helper()
	var out []byte
	var err error
	for range 20 {
		if out, err = exec.Command(args[0], args[1:]...).CombinedOutput(); err == nil {
			return
		}
		if !bytes.Contains(out, []byte("lock")) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	testkit.Missing(t, "%s: %v %s", strings.Join(args, " "), err, out)
}

// addGroup makes a system group for the test and returns its name.
func addGroup(t *testing.T) string {
	t.Helper()
	name := "ktg" + testkit.Token()
	admin(t, "groupadd", "--system", name)
	t.Cleanup(func() { exec.Command("groupdel", name).Run() })
	return name
}

// addUser makes a system user for the test with useradd's extra args
// (its groups) and returns its name.
func addUser(t *testing.T, args ...string) string {
	t.Helper()
	name := "ktu" + testkit.Token()
	admin(t, append(append([]string{"useradd", "--system", "-M", "-N", "-s", "/usr/sbin/nologin"}, args...), name)...)
	t.Cleanup(func() { exec.Command("userdel", name).Run() })
	return name
}

// ensureGroup makes a system group that the host lacks, for the test.
func ensureGroup(t *testing.T, name string) {
	t.Helper()
	if _, err := user.LookupGroup(name); err == nil {
		return
	}
	admin(t, "groupadd", "--system", name)
	t.Cleanup(func() { exec.Command("groupdel", name).Run() })
}

// netns makes a network namespace with a non-loopback address on a
// dummy interface of its own (or on its lo, without the dummy module);
// nothing in it reaches the host's network.
func netns(t *testing.T) (name, addr string) {
	t.Helper()
	testkit.NeedBinary(t, "ip", "apt-get install iproute2")
	name, addr = "keter-test-"+testkit.Token(), "10.203.23.1"
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		testkit.Missing(t, "ip netns add: %v %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v %s", name, err, out)
		}
	})
	in := func(args ...string) error {
		out, err := exec.Command("ip", append([]string{"-n", name}, args...)...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("ip -n %s %s: %w %s", name, strings.Join(args, " "), err, out)
		}
		return nil
	}
	if err := in("link", "set", "lo", "up"); err != nil {
		t.Fatal(err)
	}
	dev := "kt0"
	if in("link", "add", dev, "type", "dummy") != nil {
		dev = "lo"
	} else if err := in("link", "set", dev, "up"); err != nil {
		t.Fatal(err)
	}
	if err := in("addr", "add", addr+"/24", "dev", dev); err != nil {
		t.Fatal(err)
	}
	return name, addr
}

// inNetns runs f on a thread in the network namespace ns: sockets f
// opens stay there. The thread is never given back to the runtime.
func inNetns(ns string, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with this goroutine
		fd, err := unix.Open("/run/netns/"+ns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- err
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("entering %s: %w", ns, err)
			return
		}
		errc <- f()
	}()
	return <-errc
}
