package acme

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keter-systemd/keter/config"
	"github.com/keter-systemd/keter/internal/pebble"
	"github.com/keter-systemd/keter/internal/testkit"
)

// The test binary run with KETER_ACME_HOST=ROOT is one keter host's ACME
// manager (see host): the shared storage test runs two, as processes,
// since certmagic keeps the challenges it started in a process-wide map
// that would let one in-process manager answer for the other.
func TestMain(m *testing.M) {
	if root := os.Getenv("KETER_ACME_HOST"); root != "" {
		os.Exit(host(root))
	}
	os.Exit(m.Run())
}

// hostReport is what a host process prints for "status".
type hostReport struct {
	Storage Storage         `json:"storage"`
	Hosts   []Host          `json:"hosts"`
	Waiting map[string]bool `json:"waiting"`
	// Managed: certmagic has the host's certificate in its cache, so it
	// renews it.
	Managed map[string]bool `json:"managed"`
}

// host runs a Manager on root with the storage of KETER_ACME_STORAGE and
// obeys lines on stdin: "serve HOST...", "renew HOST", "status", "quit".
// It prints its challenge socket first, then one line per command.
func host(root string) int {
	y := fmt.Sprintf("root: %s\nlisteners: [{port: 80}, {port: 443, acme: true}]\nacme:\n  email: ops@example.com\n  directory: %s\n  trusted-roots: %s\n  storage: %q\n",
		root, os.Getenv("KETER_ACME_DIRECTORY"), os.Getenv("KETER_ACME_ROOTS"), os.Getenv("KETER_ACME_STORAGE"))
	g, _, err := config.Parse([]byte(y), root)
	if err != nil {
		fmt.Println("config:", err)
		return 1
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})).With("host", filepath.Base(root))
	m, err := New(Options{Config: g, Owner: owner, Log: log, SharedCheck: time.Second})
	if err != nil {
		fmt.Println("new:", err)
		return 1
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { m.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	fmt.Println(m.Socket())
	var served []string
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		f := strings.Fields(in.Text())
		switch {
		case len(f) > 1 && f[0] == "serve":
			served = append(served, f[1:]...)
			if err := m.Ensure(ctx, served); err != nil {
				fmt.Println("error:", err)
				continue
			}
			m.Serving(served)
			fmt.Println("ok")
		case len(f) == 2 && f[0] == "renew":
			if err := m.magic.RenewCertSync(ctx, f[1], true); err != nil {
				fmt.Println("error:", strings.ReplaceAll(err.Error(), "\n", " "))
				continue
			}
			fmt.Println("ok")
		case len(f) == 1 && f[0] == "status":
			r := hostReport{Storage: m.StorageStatus(), Hosts: m.Status(), Waiting: map[string]bool{}, Managed: map[string]bool{}}
			for _, h := range served {
				r.Waiting[h] = m.Waiting(h)
				r.Managed[h] = len(m.cache.AllMatchingCertificates(h)) > 0
			}
			b, _ := json.Marshal(r)
			fmt.Println(string(b))
		case len(f) == 1 && f[0] == "quit":
			return 0
		default:
			fmt.Println("error: unknown command", in.Text())
		}
	}
	return 0
}

// keterHost is a host process seen from the test.
type keterHost struct {
	name, root, socket string
	cmd                *exec.Cmd
	in                 io.WriteCloser
	out                *bufio.Scanner
	mu                 sync.Mutex
}

func startHost(t *testing.T, name, root, dsn string, ca *pebble.Server) *keterHost {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "KETER_ACME_HOST="+root, "KETER_ACME_DIRECTORY="+ca.DirectoryURL(),
		"KETER_ACME_ROOTS="+ca.APIRoot(), "KETER_ACME_STORAGE="+dsn)
	logf, err := os.Create(filepath.Join(t.TempDir(), name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = logf
	in, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := &keterHost{name: name, root: root, cmd: cmd, in: in, out: bufio.NewScanner(out)}
	h.out.Buffer(nil, 1<<20)
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			h.quit(t)
		}
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("%s's log:\n%s", name, b)
		}
	})
	if !h.out.Scan() {
		t.Fatalf("%s did not start", name)
	}
	h.socket = h.out.Text()
	if !strings.HasPrefix(h.socket, "/") {
		t.Fatalf("%s: %s", name, h.socket)
	}
	return h
}

func (h *keterHost) do(t *testing.T, cmd string) string {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	fmt.Fprintln(h.in, cmd)
	if !h.out.Scan() {
		t.Fatalf("%s: no answer to %q", h.name, cmd)
	}
	return h.out.Text()
}

func (h *keterHost) must(t *testing.T, cmd string) {
	t.Helper()
	if got := h.do(t, cmd); got != "ok" {
		t.Fatalf("%s: %s: %s", h.name, cmd, got)
	}
}

func (h *keterHost) status(t *testing.T) hostReport {
	t.Helper()
	var r hostReport
	if err := json.Unmarshal([]byte(h.do(t, "status")), &r); err != nil {
		t.Fatal(err)
	}
	return r
}

func (h *keterHost) quit(t *testing.T) {
	fmt.Fprintln(h.in, "quit")
	h.in.Close()
	h.cmd.Wait()
}

func (h *keterHost) file(host string) string {
	return filepath.Join(h.root, "etc", "nginx", "acme", host+".pem")
}

// balancer stands in for the load balancer in front of the hosts' nginx:
// it sends each HTTP-01 request to the socket route picks, and counts
// the answers each socket gave.
type balancer struct {
	route    atomic.Value // func() string
	mu       sync.Mutex
	answered map[string]int
}

func newBalancer(t *testing.T, port int) *balancer {
	b := &balancer{answered: map[string]int{}}
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		socket := b.route.Load().(func() string)()
		proxy := &httputil.ReverseProxy{
			Rewrite: func(pr *httputil.ProxyRequest) {
				pr.Out.URL.Scheme, pr.Out.URL.Host = "http", "acme"
				pr.Out.Host = pr.In.Host
			},
			Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, "unix", socket)
			}},
			ModifyResponse: func(resp *http.Response) error {
				if resp.StatusCode == http.StatusOK {
					b.mu.Lock()
					b.answered[socket]++
					b.mu.Unlock()
				}
				return nil
			},
		}
		proxy.ServeHTTP(w, r)
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return b
}

func (b *balancer) answers(socket string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.answered[socket]
}

// serial is the serial number of the CA's certificate in a host's file.
func serial(path string) (string, error) {
	c, err := caLeaf(path)
	if err != nil {
		return "", err
	}
	return c.SerialNumber.String(), nil
}

// TestSharedStorage: two hosts, each with its own files, share one
// PostgreSQL storage behind one load balancer, with Pebble validating
// HTTP-01 for real. A challenge one host started is answered by the
// other from the storage; a name is ordered once, however many hosts
// want it at once; a renewal one host makes (forced, so the other's copy
// is not due) reaches the other's file; with the database refusing the
// role, the hosts keep their certificates, a restarted host keeps
// serving its own, and status says the storage is unreachable, with the
// error and without the password, until it is back.
func TestSharedStorage(t *testing.T) {
	needRoot(t)
	db := testkit.Postgres(t)
	port := testkit.FreePort(t)
	ca := testkit.Pebble(t, pebble.Options{HTTPPort: port})
	caRoot, err := ca.Root(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	lb := newBalancer(t, port)
	a := startHost(t, "a", testkit.Root(t), db.DSN, ca)
	b := startHost(t, "b", testkit.Root(t), db.DSN, ca)
	one := "one-" + testkit.Token() + ".test"
	two := "two-" + testkit.Token() + ".test"
	valid := func(h *keterHost, name string) func() error {
		return func() error { _, err := verified(h.file(name), name, caRoot); return err }
	}

	// a orders; the CA's request reaches b, which does not even serve
	// the name yet: it answers from the storage.
	lb.route.Store(func() string { return b.socket })
	a.must(t, "serve "+one)
	waitFor(t, 90*time.Second, "a's certificate", valid(a, one))
	if n := lb.answers(b.socket); n == 0 {
		t.Errorf("b answered no challenge")
	}
	if got := ca.Issued(); got != 1 {
		t.Errorf("%d certificates issued, want 1", got)
	}
	b.must(t, "serve "+one)
	waitFor(t, 30*time.Second, "b's copy of a's certificate", func() error {
		sa, err := serial(a.file(one))
		if err != nil {
			return err
		}
		if sb, err := serial(b.file(one)); err != nil || sb != sa {
			return fmt.Errorf("b serves %s (%v), a %s", sb, err, sa)
		}
		return nil
	})

	// Both want a new name at once, the CA's requests alternating.
	var turn atomic.Int64
	lb.route.Store(func() string {
		if turn.Add(1)%2 == 0 {
			return a.socket
		}
		return b.socket
	})
	var wg sync.WaitGroup
	for _, h := range []*keterHost{a, b} {
		wg.Add(1)
		go func() { defer wg.Done(); h.must(t, "serve "+two) }()
	}
	wg.Wait()
	waitFor(t, 90*time.Second, "both hosts' certificate for "+two, func() error {
		sa, err := serial(a.file(two))
		if err != nil {
			return err
		}
		if sb, err := serial(b.file(two)); err != nil || sb != sa {
			return fmt.Errorf("b serves %s (%v), a %s", sb, err, sa)
		}
		return nil
	})
	time.Sleep(3 * time.Second) // a second order, if any, would be under way
	if got := ca.Issued(); got != 2 {
		t.Errorf("%d certificates issued for two names, want 2", got)
	}

	// a renews early; b's copy is not due, yet b serves the renewal.
	before, _ := serial(b.file(one))
	renewed := time.Now()
	a.must(t, "renew "+one)
	after, err := serial(a.file(one))
	if err != nil || after == before {
		t.Fatalf("a's file after the renewal: %s %v (before %s)", after, err, before)
	}
	waitFor(t, 60*time.Second, "b serving a's renewal", func() error {
		if s, err := serial(b.file(one)); err != nil || s != after {
			return fmt.Errorf("b serves %s (%v), want %s", s, err, after)
		}
		return nil
	})
	t.Logf("b served a's renewal %v after a was told to renew (shared check every 1s here, %v in keter)",
		time.Since(renewed).Round(time.Millisecond), DefaultSharedCheck)
	if got := ca.Issued(); got != 3 {
		t.Errorf("%d certificates issued, want 3", got)
	}

	// The database refuses the role.
	testkit.SuperSQL(t, "ALTER ROLE "+db.Role+" NOLOGIN")
	testkit.SuperSQL(t, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = '"+db.Role+"'")
	down := func(h *keterHost) func() error {
		return func() error {
			r := h.status(t)
			if r.Storage.Reachable || !strings.Contains(r.Storage.Error, "not permitted to log in") {
				return fmt.Errorf("storage status %+v", r.Storage)
			}
			if strings.Contains(r.Storage.Error, db.Password) || strings.Contains(r.Storage.Where, db.Password) {
				t.Fatalf("status shows the password: %+v", r.Storage)
			}
			return nil
		}
	}
	waitFor(t, 30*time.Second, "a reporting the storage unreachable", down(a))
	b.quit(t)
	b = startHost(t, "b2", b.root, db.DSN, ca)
	b.must(t, "serve "+one+" "+two)
	waitFor(t, 30*time.Second, "the restarted b reporting the storage unreachable", down(b))
	for _, h := range []*keterHost{a, b} {
		for _, name := range []string{one, two} {
			if err := valid(h, name)(); err != nil {
				t.Errorf("%s's %s with the database down: %v", h.name, name, err)
			}
		}
	}
	r := b.status(t)
	if r.Waiting[one] || r.Waiting[two] {
		t.Errorf("the restarted b waits for certificates it has: %+v", r.Waiting)
	}
	for _, h := range r.Hosts {
		if h.State != StateValid {
			t.Errorf("the restarted b: %+v", h)
		}
	}
	t.Logf("b with the database down: %+v", r)

	testkit.SuperSQL(t, "ALTER ROLE "+db.Role+" LOGIN")
	waitFor(t, 30*time.Second, "b managing its hosts again", func() error {
		r := b.status(t)
		if !r.Storage.Reachable {
			return fmt.Errorf("storage %+v", r.Storage)
		}
		for _, h := range r.Hosts {
			if h.State != StateValid || h.LastError != "" || !r.Managed[h.Host] {
				return fmt.Errorf("%+v, managed %v", h, r.Managed)
			}
		}
		return nil
	})
	if got := ca.Issued(); got != 3 {
		t.Errorf("%d certificates issued after the outage, want 3", got)
	}
}
