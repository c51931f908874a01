package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keter-systemd/keter/internal/loadgen"
	"github.com/keter-systemd/keter/internal/testkit"
)

// Canary releases through keter's real nginx and port map: a canary
// starts, changes share, is promoted or aborted under the strict client
// with no failed request and no reload; the split puts its share of
// fresh clients on the canary and keeps each client with a cookie on its
// version, across a keter restart; a crash-looping canary's clients are
// served by the live version.

// canaryCLI runs keter canary APP ARGS... and returns its line.
func canaryCLI(t *testing.T, k *keter, args ...string) string {
	t.Helper()
	out, _ := mustCLI(t, 0, append([]string{"canary", "-c", k.config()}, args...)...)
	t.Logf("keter canary %s: %s", strings.Join(args, " "), strings.TrimSpace(out))
	return out
}

// canaryJSON is the canary part of keter status --json.
type canaryJSON struct {
	Percent int  `json:"percent"`
	Ready   bool `json:"ready"`
	Version *struct {
		Version string `json:"version"`
		Digest  string `json:"digest"`
	} `json:"version"`
}

func canaryOf(t *testing.T, k *keter, name string) *canaryJSON {
	t.Helper()
	out, _ := mustCLI(t, 0, "status", "-c", k.config(), "--json")
	var s struct {
		Apps []struct {
			Name   string      `json:"name"`
			Canary *canaryJSON `json:"canary"`
		} `json:"apps"`
	}
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatalf("keter status --json: %v\n%s", err, out)
	}
	for _, a := range s.Apps {
		if a.Name == name {
			return a.Canary
		}
	}
	t.Fatalf("no app %s in keter status", name)
	return nil
}

// requestsOf is the canary's request counts from keter status --json.
func requestsOf(t *testing.T, k *keter, name string) struct{ Live, Canary uint64 } {
	t.Helper()
	out, _ := mustCLI(t, 0, "status", "-c", k.config(), "--json")
	var s struct {
		Apps []struct {
			Name   string `json:"name"`
			Canary *struct {
				Requests struct {
					Live   uint64 `json:"live"`
					Canary uint64 `json:"canary"`
				} `json:"requests"`
			} `json:"canary"`
		} `json:"apps"`
	}
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatal(err)
	}
	for _, a := range s.Apps {
		if a.Name == name && a.Canary != nil {
			return struct{ Live, Canary uint64 }{a.Canary.Requests.Live, a.Canary.Requests.Canary}
		}
	}
	return struct{ Live, Canary uint64 }{}
}

// deployCanary writes version v and deploys it with keter deploy, which
// returns once it runs as the canary.
func (z *zeroApp) deployCanary(extra string, args ...string) string {
	z.t.Helper()
	v := z.next()
	dir := filepath.Join(z.k.Root, "src", v)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		z.t.Fatal(err)
	}
	path := filepath.Join(dir, z.name+".keter")
	testkit.BehaveBundle(z.t, path, z.host, "drain: 8s\n"+extra, append([]string{"--version", v}, args...)...)
	out, _ := mustCLI(z.t, 0, "deploy", "-c", z.k.config(), path)
	if !strings.Contains(out, "runs as the canary") {
		z.t.Fatalf("keter deploy of a canary said: %s", out)
	}
	return v
}

// TestCanaryZeroFailed: under the strict client at every behaviour, a
// canary starts at 10 %, goes to 50 %, and is promoted; in a second run
// it is aborted. No request fails, nginx is never reloaded, and the
// quick behaviours get answers from both versions.
func TestCanaryZeroFailed(t *testing.T) {
	for _, end := range []string{"promote", "abort"} {
		t.Run(end, func(t *testing.T) {
			k, sp := startZeroKeter(t)
			z := &zeroApp{t: t, k: k, name: "canary" + end, host: "canary-" + end + ".test"}
			v1 := z.deploy("")
			before := reloads(t, sp)
			run := drive(t, k, z.host, false)
			// Each step's time since the load began, to place a failure's.
			began := time.Now()
			step := func(s string) { t.Logf("+%.3fs %s", time.Since(began).Seconds(), s) }
			settle()
			if out := canaryCLI(t, k, z.name, "--percent", "10"); !strings.Contains(out, "armed at 10%") {
				t.Fatalf("keter canary --percent 10 said %q", out)
			}
			step("canary deploy")
			v2 := z.deployCanary("")
			step("canary serving")
			settle()
			canaryCLI(t, k, z.name, "--percent", "50")
			step("share 50")
			if c := canaryOf(t, k, z.name); c == nil || c.Percent != 50 || !c.Ready || c.Version == nil {
				t.Fatalf("status after --percent 50: %+v", c)
			}
			if got := metric(t, fmt.Sprintf("http://127.0.0.1:%d", sp), fmt.Sprintf("keter_app_canary_percent{app=%q}", z.name)); got != "50" {
				t.Errorf("keter_app_canary_percent = %q, want 50", got)
			}
			settle()
			settle()
			step(end)
			canaryCLI(t, k, z.name, end)
			step(end + " done")
			want := v2
			if end == "abort" {
				want = v1
			}
			mustServeVersion(t, k, z.host, want)
			settle()
			settle()
			step("stop")
			res := run.Stop()
			checkZero(t, "canary "+end, res, 1)
			// The quick behaviours met both versions (3 s answers are too few
			// to be sure of, a WebSocket stays where it began).
			for _, b := range []loadgen.Behaviour{loadgen.One, loadgen.Split, loadgen.Download} {
				if c := res.PerBehaviour[b]; c == nil || c.Versions[v1] == 0 || c.Versions[v2] == 0 {
					t.Errorf("%s: answers by version %v, want both %s and %s", b, c.Versions, v1, v2)
				}
			}
			if got := reloads(t, sp); got != before {
				t.Errorf("the canary reloaded nginx: keter_nginx_reloads_total %s → %s", before, got)
			}
			if c := canaryOf(t, k, z.name); c != nil {
				t.Errorf("a canary is left after %s: %+v", end, c)
			}
			k.waitSettled(1, 60*time.Second)
		})
	}
}

// mustServeVersion waits until fresh clients get version v, then checks
// that 50 in a row do.
func mustServeVersion(t *testing.T, k *keter, host, v string) {
	t.Helper()
	c := newClient()
	eventually(t, 30*time.Second, func() error {
		if got, _ := fetchVersion(c, k, host, ""); got != v {
			return fmt.Errorf("got %q, want %s", got, v)
		}
		return nil
	})
	time.Sleep(1500 * time.Millisecond) // past the switch bound
	for range 50 {
		if got, err := fetchVersion(c, k, host, ""); got != v {
			t.Fatalf("a fresh client got %q (%v), want %s", got, err, v)
		}
	}
}

// newClient keeps connections and never cookies.
func newClient() *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
}

// fetchVersion GETs /one with cookie (none if "") and returns the version
// that answered and the cookie nginx set.
func fetchVersion(c *http.Client, k *keter, host, cookie string) (string, string) {
	req, err := http.NewRequest("GET", fmt.Sprintf("http://127.0.0.1:%d/one", k.Port), nil)
	if err != nil {
		return "", ""
	}
	req.Host = host
	if cookie != "" {
		req.Header.Set("Cookie", cookie)
	}
	resp, err := c.Do(req)
	if err != nil {
		return "error: " + err.Error(), ""
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != 200 {
		return "status " + strconv.Itoa(resp.StatusCode), ""
	}
	set := ""
	for _, ck := range resp.Cookies() {
		if ck.Name == "keter_canary" {
			set = ck.Name + "=" + ck.Value
		}
	}
	return resp.Header.Get("X-Version"), set
}

// TestCanarySplit: with --percent 20, 10,000 fresh clients (no cookie)
// split 20 ± 2 % onto the canary, each told its cookie; a client with
// its cookie stays on its version for 100 requests, after a share
// change and across a keter restart; promote then serves everyone the
// canary.
func TestCanarySplit(t *testing.T) {
	k, sp := startZeroKeter(t)
	z := &zeroApp{t: t, k: k, name: "split", host: "split.test"}
	v1 := z.deploy("")
	before := reloads(t, sp)
	canaryCLI(t, k, z.name, "--percent", "20")
	v2 := z.deployCanary("")
	c := newClient()
	const n = 10000
	got := map[string]int{}
	cookies := map[string]string{}
	for range n {
		v, set := fetchVersion(c, k, z.host, "")
		got[v]++
		if set == "" {
			t.Fatalf("a fresh client got no keter_canary cookie (version %q)", v)
		}
		cookies[v] = set
	}
	share := float64(got[v2]) * 100 / n
	t.Logf("10,000 fresh clients at --percent 20: %v: %.2f%% on the canary", got, share)
	if got[v1]+got[v2] != n || share < 18 || share > 22 {
		t.Fatalf("split %v: %.2f%% on the canary, want 20 ± 2 and every answer from %s or %s", got, share, v1, v2)
	}
	// nginx told keter each request's version. A line nginx cannot send
	// at once (keter's queue full on a busy machine) is not counted.
	eventually(t, 10*time.Second, func() error {
		r := requestsOf(t, k, z.name)
		counted := r.Live + r.Canary
		if counted < n*95/100 || counted > n || r.Canary > uint64(got[v2]) || r.Live > uint64(got[v1]) ||
			math.Abs(float64(r.Canary)*100/float64(counted)-share) > 1 {
			return fmt.Errorf("keter counted %+v, want about live %d canary %d", r, got[v1], got[v2])
		}
		return nil
	})
	t.Logf("keter counted %+v", requestsOf(t, k, z.name))
	sticks := func(when string) {
		t.Helper()
		for _, v := range []string{v1, v2} {
			for i := range 100 {
				if g, _ := fetchVersion(c, k, z.host, cookies[v]); g != v {
					t.Fatalf("%s: request %d with the cookie of a %s client got %q", when, i+1, v, g)
				}
			}
		}
	}
	sticks("at 20%")
	if got := reloads(t, sp); got != before {
		t.Errorf("the canary reloaded nginx: keter_nginx_reloads_total %s → %s", before, got)
	}
	k.restart()
	before = reloads(t, sp) // counted from keter's start
	if cj := canaryOf(t, k, z.name); cj == nil || cj.Percent != 20 || cj.Version == nil || cj.Version.Version == "" || !cj.Ready {
		t.Fatalf("status after a keter restart: %+v", cj)
	}
	sticks("after a keter restart")
	// nginx sends its request lines to the new keter's socket.
	eventually(t, 10*time.Second, func() error {
		if r := requestsOf(t, k, z.name); r.Live < 90 || r.Canary < 90 {
			return fmt.Errorf("after a keter restart keter counted %+v of 100 requests per version", r)
		}
		return nil
	})
	// A share that grows keeps the canary's clients.
	canaryCLI(t, k, z.name, "--percent", "60")
	for i := range 100 {
		if g, _ := fetchVersion(c, k, z.host, cookies[v2]); g != v2 {
			t.Fatalf("at 60%%: request %d of a canary client got %q", i+1, g)
		}
	}
	canaryCLI(t, k, z.name, "promote")
	mustServeVersion(t, k, z.host, v2)
	if g, _ := fetchVersion(c, k, z.host, cookies[v1]); g != v2 {
		t.Fatalf("after promote a client of the old version got %q, want %s", g, v2)
	}
	if got := reloads(t, sp); got != before {
		t.Errorf("the canary reloaded nginx: keter_nginx_reloads_total %s → %s", before, got)
	}
}

// TestCanaryCrashLoop: a canary that crash-loops (exits at start, never
// listening) takes no traffic from the live version: a client kept on
// the live version sees no failure at any behaviour, and once the loop
// runs, clients of the canary's buckets are served by the live version
// without a failure. Status says the canary is not serving.
func TestCanaryCrashLoop(t *testing.T) {
	k, _ := startZeroKeter(t)
	z := &zeroApp{t: t, k: k, name: "loopy", host: "loopy.test"}
	v1 := z.deploy("")
	canaryCLI(t, k, z.name, "--percent", "50")
	v2 := z.deployCanary("", "--down-file", "down")
	// A cookie the split keeps on each version.
	c := newClient()
	pinned := map[string]string{}
	for i := 0; len(pinned) < 2 && i < 1000; i++ {
		ck := "keter_canary=probe" + strconv.Itoa(i)
		v, _ := fetchVersion(c, k, z.host, ck)
		if _, ok := pinned[v]; !ok && (v == v1 || v == v2) {
			pinned[v] = ck
		}
	}
	if pinned[v1] == "" || pinned[v2] == "" {
		t.Fatalf("no cookie found for each version: %v", pinned)
	}
	live, err := loadgen.Start(context.Background(), loadgen.Options{
		Addr: fmt.Sprintf("127.0.0.1:%d", k.Port), Host: z.host, WorkersPer: 1, Pause: 30 * time.Millisecond, Cookie: pinned[v1],
	})
	if err != nil {
		t.Fatal(err)
	}
	settle()

	// The canary's version folder gets the down file; its process is
	// killed, and every start after exits.
	dirs, _ := filepath.Glob(filepath.Join(k.Root, "temp", z.name+"-*"))
	var canaryDir string
	for _, d := range dirs {
		if b, err := os.ReadFile(filepath.Join(d, "config", "keter.yaml")); err == nil && strings.Contains(string(b), `"`+v2+`"`) {
			canaryDir = d
		}
	}
	if canaryDir == "" {
		t.Fatalf("no folder of the canary %s among %v", v2, dirs)
	}
	if err := os.WriteFile(filepath.Join(canaryDir, "down"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	var unit string
	for _, u := range instanceUnits(t, z.name) {
		if !strings.Contains(u, z.liveID(t)) {
			unit = u
		}
	}
	if unit == "" {
		t.Fatal("no canary unit")
	}
	kill(t, unit)
	eventually(t, 30*time.Second, func() error {
		if n, _ := strconv.Atoi(unitProp(t, unit, "NRestarts")); n < 3 {
			return fmt.Errorf("%s restarted %d times", unit, n)
		}
		return nil
	})
	if cj := canaryOf(t, k, z.name); cj == nil || cj.Ready {
		t.Errorf("status of a crash-looping canary: %+v, want not ready", cj)
	}
	// Clients of the canary's buckets, while it loops.
	lost, err := loadgen.Start(context.Background(), loadgen.Options{
		Addr: fmt.Sprintf("127.0.0.1:%d", k.Port), Host: z.host, WorkersPer: 1, Pause: 30 * time.Millisecond, Cookie: pinned[v2],
		Behaviours: []loadgen.Behaviour{loadgen.One, loadgen.Split},
	})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Second)
	lres := lost.Stop()
	res := live.Stop()
	restarts, _ := strconv.Atoi(unitProp(t, unit, "NRestarts"))
	t.Logf("the canary restarted %d times", restarts)
	checkZero(t, "live clients through the canary's crash loop", res, 1)
	for _, b := range loadgen.All() {
		if cnt := res.PerBehaviour[b]; cnt != nil && cnt.Versions[v2] > 0 {
			t.Errorf("%s: a client kept on the live version got the canary: %v", b, cnt.Versions)
		}
	}
	t.Logf("canary clients during the loop:\n%s", lres)
	if n := lres.Failed(); n != 0 {
		t.Errorf("%d requests of the canary's clients failed while it crash-looped", n)
	}
	for _, b := range []loadgen.Behaviour{loadgen.One, loadgen.Split} {
		if cnt := lres.PerBehaviour[b]; cnt == nil || cnt.OK == 0 || cnt.Versions[v2] > 0 {
			t.Errorf("%s: canary clients while it loops: %+v, want answers from %s only", b, cnt, v1)
		}
	}
	canaryCLI(t, k, z.name, "abort")
}

// liveID is the live version's id.
func (z *zeroApp) liveID(t *testing.T) string {
	t.Helper()
	a := statusOf(t, z.k).app(z.name)
	if a == nil || a.Live == nil {
		t.Fatalf("%s has no live version", z.name)
	}
	return a.Live.Version
}
