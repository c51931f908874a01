package nginx

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/keter-systemd/keter/bundle"
	"github.com/keter-systemd/keter/internal/testkit"
	"github.com/keter-systemd/keter/portmap"
)

// TestMappedSwitchWithoutReload: with a port map, a new version's port
// reaches nginx without a reload, every new request goes to it once
// Apply returns, and a keep-alive client sees no failure.
func TestMappedSwitchWithoutReload(t *testing.T) {
	pm := needPortMap(t)
	f := startFront(t, "", WithPortMap(pm))
	ctx := t.Context()
	base := fmt.Sprintf("http://x:%d/", f.port)
	fresh := client(fmt.Sprintf("127.0.0.1:%d", f.port))
	host := map[string]string{"Host": "mapped.test"}

	a, b := backend(t, "a"), backend(t, "b")
	front := testkit.FreePort(t)
	cfg := &bundle.AppConfig{Stanzas: []bundle.Stanza{webapp("mapped.test")}}
	version := func(port int) []App {
		return []App{{Name: "mapped", Dir: f.root, Config: cfg, Ports: one(map[int]int{0: port}), Fronts: one(map[int]int{0: front})}}
	}
	if err := f.m.Apply(ctx, version(portOf(t, a))); err != nil {
		t.Fatal(err)
	}
	if got, err := get(fresh, base, host); err != nil || got.status != 200 || !strings.HasPrefix(got.body, "app=a ") {
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

	// A keep-alive client, as browsers and load balancers are.
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
			got, err := get(kept, base, host)
			if err != nil || got.status != 200 {
				failed.Add(1)
				lastFail.Store(fmt.Sprintf("%d %q %v", got.status, got.body, err))
				continue
			}
			ok.Add(1)
		}
	}()

	if err := f.m.Apply(ctx, version(portOf(t, b))); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		if got, err := get(fresh, base, host); err != nil || !strings.HasPrefix(got.body, "app=b ") {
			t.Fatalf("request %d after Apply returned: %+v %v (want the new version)", i, got, err)
		}
	}
	got, err := get(kept, base, host)
	if err != nil || !strings.HasPrefix(got.body, "app=b ") {
		t.Fatalf("keep-alive client after Apply returned: %+v %v (want the new version)", got, err)
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

	// Someone flushes the ruleset: the guard puts keter's map back.
	if err := pm.Remove(ctx); err != nil {
		t.Fatal(err)
	}
	// Connections nginx keeps were made through the map and outlive it.
	if _, err := pm.CloseIdle(front, portOf(t, b)); err != nil {
		t.Fatal(err)
	}
	if got, err := get(fresh, base, host); err != nil || got.status != 502 {
		t.Fatalf("with the table gone: %+v %v, want 502 (else the test does not remove what it means to)", got, err)
	}
	f.m.checkMap(ctx)
	if got, err := get(fresh, base, host); err != nil || !strings.HasPrefix(got.body, "app=b ") {
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
