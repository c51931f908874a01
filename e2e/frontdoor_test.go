package e2e

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keter-systemd/keter/internal/testkit"
	"github.com/keter-systemd/keter/portmap"
)

// TestRapidDropsUnderKeepAlive drops bundles in quick succession (most are
// superseded mid-deploy) while keep-alive clients load the app: the front
// door must never send a request to a port where no version listens.
func TestRapidDropsUnderKeepAlive(t *testing.T) {
	const perRound = 40
	rounds := 3
	if n, err := strconv.Atoi(os.Getenv("KETER_TEST_ROUNDS")); err == nil {
		rounds = n
	}
	k := startKeter(t, "")
	host := "rapid-" + testkit.Token() + ".test"
	k.deployDemo("rapid.keter", host, "v0")

	staged := filepath.Join(k.Root, "staged")
	if err := os.Mkdir(staged, 0o755); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= perRound; i++ {
		testkit.DemoBundle(t, filepath.Join(staged, fmt.Sprintf("v%d.keter", i)), host, "--message", fmt.Sprintf("v%d", i))
	}

	l := startKeepAliveLoad(k, host, 8, func(b string) bool { return strings.HasPrefix(b, "v") })
	w := startWrk(t, k, host)
	for r := range rounds {
		for i := 1; i <= perRound; i++ {
			src := filepath.Join(staged, fmt.Sprintf("v%d.keter", i))
			if os.Getenv("KETER_TEST_COPY") != "" {
				// cp, as an operator does: keter sees the file while it grows.
				exec.Command("cp", src, filepath.Join(k.Root, "incoming", "rapid.keter")).Run()
			} else {
				k.Drop(src, "rapid.keter")
			}
			time.Sleep(time.Duration(rand.IntN(40)) * time.Millisecond)
		}
		k.WaitBody(host, fmt.Sprintf("v%d", perRound), 60*time.Second)
		t.Logf("round %d: %d ok, %d failed so far", r, l.ok.Load(), l.failed.Load())
	}
	time.Sleep(1500 * time.Millisecond) // past the last drain
	wrkFailed := w.stop(t)
	if l.failed.Load() > 0 || wrkFailed > 0 {
		out := run(t, "journalctl", "--no-pager", "-o", "short-precise", "-u", k.Nginx)
		var refused []string
		for _, line := range strings.Split(out, "\n") {
			if strings.Contains(line, "upstream") {
				refused = append(refused, line)
			}
		}
		t.Logf("nginx errors:\n%s", strings.Join(refused, "\n"))
	}
	if wrkFailed > 0 {
		t.Errorf("wrk: %d requests failed across %d rapid drops", wrkFailed, perRound*rounds)
	}
	l.mustAllSucceed(t, fmt.Sprintf("across %d rapid drops", perRound*rounds))
	k.waitSettled(1, 60*time.Second)
}

// startKeepAliveLoad is startLoad with clients that keep their connections,
// as browsers and load balancers do.
func startKeepAliveLoad(k *keter, host string, workers int, accept func(string) bool) *load {
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: workers}}
	k2 := *k
	k2.client = c
	return startLoad(&k2, host, workers, accept)
}

// wrkLoad is wrk keeping 32 connections busy, as the drill did.
type wrkLoad struct {
	cmd *exec.Cmd
	out strings.Builder
}

func startWrk(t *testing.T, k *keter, host string) *wrkLoad {
	t.Helper()
	bin := testkit.NeedBinary(t, "wrk", "apt-get install wrk")
	w := &wrkLoad{cmd: exec.Command(bin, "-t2", "-c32", "-d3600s", "-H", "Host: "+host, fmt.Sprintf("http://127.0.0.1:%d/", k.Port))}
	w.cmd.Stdout, w.cmd.Stderr = &w.out, &w.out
	if err := w.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.cmd.Process.Kill(); w.cmd.Wait() })
	return w
}

var wrkErrors = regexp.MustCompile(`(?:Non-2xx or 3xx responses: (\d+))|(?:Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+))`)

// stop ends wrk (SIGINT prints its summary) and returns the failures.
func (w *wrkLoad) stop(t *testing.T) int {
	t.Helper()
	w.cmd.Process.Signal(syscall.SIGINT)
	w.cmd.Wait()
	t.Logf("wrk:\n%s", w.out.String())
	failed := 0
	for _, m := range wrkErrors.FindAllStringSubmatch(w.out.String(), -1) {
		for _, g := range m[1:] {
			n, _ := strconv.Atoi(g)
			failed += n
		}
	}
	return failed
}

// mapOf reads keter's port map from the kernel.
func (k *keter) mapOf(t *testing.T) map[int]int {
	t.Helper()
	m, err := portmap.New(k.Table).Current(t.Context())
	if err != nil {
		t.Fatalf("reading the port map: %v", err)
	}
	return m
}

// TestMapFollowsUnits: a crash keeps the app's map entry (systemd brings it
// back on the same port); an operator's stop takes it out, with keter
// running or not, and keter does not put it back; stopping everything
// the README's way leaves nothing that redirects anything.
func TestMapFollowsUnits(t *testing.T) {
	k := startKeter(t, "")
	tok := testkit.Token()
	hostA, hostB := "mapa-"+tok+".test", "mapb-"+tok+".test"
	k.deployDemo("mapa.keter", hostA, "a")
	k.deployDemo("mapb.keter", hostB, "b")
	if m := k.mapOf(t); len(targets(m)) != 2 {
		t.Fatalf("map %v, want two entries", m)
	}
	// A package upgrade reloads systemd, which re-reads every transient
	// unit from its file: the units must keep their hooks.
	run(t, "systemctl", "daemon-reload")
	unitOf := func(app string) string {
		for _, u := range activeAppUnits(t) {
			if strings.HasPrefix(u, "keter-app-"+app+"-") {
				return u
			}
		}
		t.Fatalf("no unit of %s among %v", app, activeAppUnits(t))
		return ""
	}

	// A crash: the entry stays, and the app answers again.
	a := unitOf("mapa")
	run(t, "systemctl", "kill", "-s", "KILL", a)
	k.WaitBody(hostA, "a", 30*time.Second)
	if m := k.mapOf(t); len(targets(m)) != 2 {
		t.Fatalf("after a crash the map is %v, want both entries", m)
	}

	// An operator stops a live unit while keter runs.
	run(t, "systemctl", "stop", a)
	eventually(t, 10*time.Second, func() error {
		if m := k.mapOf(t); len(targets(m)) != 1 {
			return fmt.Errorf("map %v, want only b's entry", m)
		}
		return nil
	})
	time.Sleep(2500 * time.Millisecond) // two turns of keter's map guard
	if m := k.mapOf(t); len(targets(m)) != 1 {
		t.Fatalf("keter put a stopped unit's entry back: %v", m)
	}

	// With keter stopped, an operator stops the other one.
	run(t, "systemctl", "stop", k.Unit)
	if !strings.Contains(k.Log(), "version live") {
		t.Fatalf("keter's journal is empty once it stopped:\n%s", k.Log())
	}
	run(t, "systemctl", "daemon-reload") // as removing the package does
	run(t, "systemctl", "stop", unitOf("mapb"))
	if m := k.mapOf(t); len(m) != 0 {
		t.Fatalf("a unit stopped while keter was down left its entry: %v", m)
	}

	// Everything stopped the README's way, in one command (keter
	// deploys both again first: their bundles are in incoming/).
	k.start()
	k.WaitBody(hostB, "b", 60*time.Second)
	k.deployDemo("mapa.keter", hostA, "a2")
	if m := k.mapOf(t); len(targets(m)) != 2 {
		t.Fatalf("after keter's restart the map is %v, want both entries", m)
	}
	run(t, "systemctl", "stop", k.Unit, "keter-app-*", k.Nginx)
	if m := k.mapOf(t); len(m) != 0 {
		t.Fatalf("after stopping everything the map still redirects: %v", m)
	}
}

// targets are the ports a port map sends fronts to: one per running app
// instance, whatever number of (spare) fronts lead there.
func targets(m map[int]int) map[int]bool {
	out := map[int]bool{}
	for _, p := range m {
		out[p] = true
	}
	return out
}

// TestStrangerOnAppPortIsNotReady: another program takes a new version's
// port before the app binds it (another keter on the host with the same
// ranges did, in CI) and answers HTTP there. keter must not call that
// ready and switch to it: the old version keeps serving and the error
// says why.
func TestStrangerOnAppPortIsNotReady(t *testing.T) {
	k := startKeter(t, "")
	host := "stranger-" + testkit.Token() + ".test"
	src := filepath.Join(k.Root, "s.keter")
	stanzaBundle(t, src, host, "", "--message", "good")
	k.Drop(src, "stranger.keter")
	k.WaitBody(host, "good", 60*time.Second)

	stanzaBundle(t, src, host, "    ensure-alive-time-bound: 4000000\n", "--never-ready")
	before := strings.Count(k.Log(), `msg="unit started"`)
	k.Drop(src, "stranger.keter")
	var port string
	eventually(t, 30*time.Second, func() error {
		if strings.Count(k.Log(), `msg="unit started"`) == before {
			return fmt.Errorf("the new version has not started")
		}
		for _, u := range activeAppUnits(t) {
			if !strings.HasPrefix(u, "keter-app-stranger-") {
				continue
			}
			_, p, ok := strings.Cut(unitProp(t, u, "Environment"), "PORT=")
			if !ok {
				continue
			}
			p = strings.Fields(p)[0]
			if !strings.Contains(k.Log(), "ports=["+p+"]") { // not the live version's
				port = p
				return nil
			}
		}
		return fmt.Errorf("no new unit with a PORT yet")
	})
	l, err := net.Listen("tcp", "127.0.0.1:"+port)
	if err != nil {
		t.Fatalf("taking the new version's port %s: %v", port, err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "stranger") })}
	go srv.Serve(l)
	defer srv.Close()

	load := startLoad(k, host, 2, func(b string) bool { return b == "good" })
	eventually(t, 60*time.Second, func() error {
		for _, line := range strings.Split(k.Log(), "\n") {
			if strings.Contains(line, "deploy failed") && strings.Contains(line, "outside the unit") {
				return nil
			}
		}
		return fmt.Errorf("no deploy failure naming the program on the port")
	})
	load.mustAllSucceed(t, "while another program held the new version's port")
}
