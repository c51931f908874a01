package nginx

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keter-systemd/keter/bundle"
	"github.com/keter-systemd/keter/internal/testkit"
	"github.com/keter-systemd/keter/portmap"
)

// TestMappedSwitchWithoutReload holds the switch to its contract: with a
// port map a new version needs no reload; every connection nginx opens
// after Apply returns goes to the new version; a request reaches the old
// one only on a connection nginx opened before, and only when it starts
// within SwitchBound; a keep-alive client with no retries sees no
// failure. The worst case is made on purpose: a request busy at the
// switch returns its connection to nginx's cache just inside
// keepalive_time, where it may wait keepalive_timeout more.
func TestMappedSwitchWithoutReload(t *testing.T) {
	pm := needPortMap(t)
	f := startFront(t, "", WithPortMap(pm))
	ctx := t.Context()
	base := fmt.Sprintf("http://x:%d/", f.port)
	fresh := client(fmt.Sprintf("127.0.0.1:%d", f.port))
	host := map[string]string{"Host": "mapped.test"}

	a, b := slowBackend(t, "a"), slowBackend(t, "b")
	front := testkit.FreePort(t)
	cfg := &bundle.AppConfig{Stanzas: []bundle.Stanza{webapp("mapped.test")}}
	version := func(port int) []App {
		return []App{{Name: "mapped", Dir: f.root, Config: cfg, Ports: one(map[int]int{0: port}), Fronts: one(map[int]int{0: front})}}
	}
	if err := f.m.Apply(ctx, version(portOf(t, a))); err != nil {
		t.Fatal(err)
	}
	if got, err := get(fresh, base, host); err != nil || got.status != 200 || got.body != "app=a" {
		t.Fatalf("first version: %+v %v", got, err)
	}
	reloads := f.m.Reloads()

	// Only nginx's connections are redirected: not this test's (root,
	// outside nginx's cgroup), not those of nginx's own user outside it.
	direct := client(fmt.Sprintf("127.0.0.1:%d", front))
	if got, err := get(direct, fmt.Sprintf("http://x:%d/", front), host); err == nil {
		t.Fatalf("a process outside nginx reached the front port: %+v", got)
	}
	out, err := exec.Command("setpriv", "--reuid="+workerUser(), "--regid="+workerUser(), "--clear-groups", "bash", "-c",
		fmt.Sprintf(`if { exec 3<>/dev/tcp/127.0.0.1/%d; } 2>/dev/null; then echo connected; else echo refused; fi`, front)).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "refused" {
		t.Fatalf("nginx's user outside nginx's cgroup: %q %v, want refused", out, err)
	}

	// A keep-alive client, as browsers and load balancers are. POST:
	// Go's client retries no POST, so every failure shows.
	kept := client(fmt.Sprintf("127.0.0.1:%d", f.port))
	kept.Transport.(*http.Transport).DisableKeepAlives = false
	var ok, failed atomic.Int64
	var lastFail atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			got, err := post(kept, base+"load", host)
			if err != nil || got.status != 200 {
				failed.Add(1)
				lastFail.Store(fmt.Sprintf("%d %q %v", got.status, got.body, err))
				continue
			}
			ok.Add(1)
		}
	}()

	// The worst case: busy at the switch, back in the cache just before
	// it is too old to be kept.
	busyFor := UpstreamKeepaliveTime - 80*time.Millisecond
	parked := make(chan error, 1)
	go func() {
		got, err := get(fresh, fmt.Sprintf("%sslow?ms=%d", base, busyFor.Milliseconds()), host)
		if err == nil && (got.status != 200 || got.body != "app=a") {
			err = fmt.Errorf("%d %q", got.status, got.body)
		}
		parked <- err
	}()
	time.Sleep(30 * time.Millisecond)
	switched := time.Now()
	if err := f.m.Apply(ctx, version(portOf(t, b))); err != nil {
		t.Fatal(err)
	}
	applied := time.Now()
	// Fresh connections, as nginx's workers take them in turn: each
	// starts as nginx may pick a kept connection to the old version.
	var lastOld time.Duration
	probes := 0
	for time.Since(switched) < SwitchBound+500*time.Millisecond {
		start := time.Since(switched)
		got, err := get(fresh, base, host)
		if err != nil || got.status != 200 {
			t.Fatalf("probe %s after the switch: %+v %v", start, got, err)
		}
		probes++
		if got.body == "app=a" {
			lastOld = time.Since(switched)
			if start > SwitchBound+100*time.Millisecond {
				t.Fatalf("a request started %s after the switch reached the old version (bound %s)", start, SwitchBound)
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := <-parked; err != nil {
		t.Fatalf("the request busy at the switch: %v, want the old version's answer", err)
	}
	t.Logf("last answer from the old version %s after the switch (Apply took %s; bound %s + a request; %d probes)",
		lastOld.Round(time.Millisecond), applied.Sub(switched).Round(time.Millisecond), SwitchBound, probes)
	// A fresh client connection need not meet the kept one: the
	// contract's other half is that new upstream connections go to b.
	if got, err := post(client(fmt.Sprintf("127.0.0.1:%d", f.port)), base, host); err != nil || got.body != "app=b" {
		t.Fatalf("after the bound: %+v %v (want the new version)", got, err)
	}
	close(stop)
	wg.Wait()
	kept.CloseIdleConnections()
	if failed.Load() != 0 || ok.Load() == 0 {
		t.Fatalf("keep-alive client: %d failed, %d ok across the switch; last failure: %v", failed.Load(), ok.Load(), lastFail.Load())
	}
	if n := f.m.Reloads(); n != reloads {
		t.Fatalf("the switch reloaded nginx (%d reloads, want %d)", n, reloads)
	}
	if cur, err := pm.Current(ctx); err != nil || len(cur) != 1 || cur[front] != portOf(t, b) {
		t.Fatalf("map = %v %v, want {%d: %d}", cur, err, front, portOf(t, b))
	}

	// A check that finds the map whole skips the next read-back until
	// nftables changes; someone else changing an element is such a change.
	f.m.checkMap(ctx)
	if f.m.cleanAt == nil {
		t.Fatal("a check of a whole map noted no generation")
	}
	script := fmt.Sprintf("delete element ip %[1]s fronts { %[2]d }; add element ip %[1]s fronts { %[2]d : %[3]d }", pm.Table(), front, portOf(t, a))
	if out, err := exec.Command("nft", script).CombinedOutput(); err != nil {
		t.Fatalf("nft: %v: %s", err, out)
	}
	f.m.checkMap(ctx)
	if cur, err := pm.Current(ctx); err != nil || len(cur) != 1 || cur[front] != portOf(t, b) {
		t.Fatalf("after nft pointed the front at the old version and a check: %v %v, want {%d: %d}", cur, err, front, portOf(t, b))
	}
	f.m.checkMap(ctx)

	// Someone flushes the ruleset: the guard puts keter's map back.
	if err := pm.Remove(ctx); err != nil {
		t.Fatal(err)
	}
	// Connections nginx keeps were made through the map and outlive it,
	// until nginx retires them.
	time.Sleep(SwitchBound + 200*time.Millisecond)
	if got, err := get(fresh, base, host); err != nil || got.status != 502 {
		t.Fatalf("with the table gone: %+v %v, want 502 (else the test does not remove what it means to)", got, err)
	}
	f.m.checkMap(ctx)
	if got, err := get(fresh, base, host); err != nil || got.body != "app=b" {
		t.Fatalf("after the guard restored the map: %+v %v, want the new version", got, err)
	}

	// Removing the app: nginx forgets the host, then the map its port.
	if err := f.m.Apply(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if got, err := get(fresh, base, host); err != nil || got.status != 404 {
		t.Fatalf("after removal: %+v %v, want 404", got, err)
	}
	if cur, err := pm.Current(ctx); err != nil || len(cur) != 0 {
		t.Fatalf("map after removal = %v %v, want empty", cur, err)
	}
}

// slowBackend answers "app=NAME", in two writes (headers, then the body
// 5 ms later, as most frameworks do), after ?ms= milliseconds.
func slowBackend(t testing.TB, name string) *httptest.Server {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if ms, err := strconv.Atoi(r.URL.Query().Get("ms")); err == nil {
			time.Sleep(time.Duration(ms) * time.Millisecond)
		}
		body := "app=" + name
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(200)
		http.NewResponseController(w).Flush()
		time.Sleep(5 * time.Millisecond)
		io.WriteString(w, body)
	}))
	t.Cleanup(s.Close)
	return s
}

// post is get with a POST and a small body.
func post(c *http.Client, url string, hdr map[string]string) (answer, error) {
	req, err := http.NewRequest("POST", url, strings.NewReader("x=1"))
	if err != nil {
		return answer{}, err
	}
	req.Host = hdr["Host"]
	resp, err := c.Do(req)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return answer{status: resp.StatusCode, body: string(b), header: resp.Header}, err
}

// needPortMap sets up a port map table of the test's own, removed at the
// end.
func needPortMap(t *testing.T) *portmap.Map {
	t.Helper()
	testkit.NeedBinary(t, "nft", "apt-get install nftables")
	if os.Geteuid() != 0 {
		testkit.Missing(t, "nftables needs root")
	}
	pm := portmap.New("kt_" + testkit.Token())
	if err := pm.Setup(t.Context()); err != nil {
		testkit.Missing(t, "nftables unusable here: %v", err)
	}
	t.Cleanup(func() { pm.Remove(context.Background()) })
	return pm
}
