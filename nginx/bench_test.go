package nginx

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"regexp"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/keter-systemd/keter/bundle"
	"github.com/keter-systemd/keter/internal/testkit"
)

var rpsRE = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)

func wrk(b *testing.B, bin, url, host string) float64 {
	b.Helper()
	args := []string{"-t2", "-c32", "-d10s"}
	if host != "" {
		args = append(args, "-H", "Host: "+host)
	}
	out, err := exec.Command(bin, append(args, url)...).CombinedOutput()
	if err != nil {
		b.Fatalf("wrk: %v\n%s", err, out)
	}
	m := rpsRE.FindSubmatch(out)
	if m == nil {
		b.Fatalf("no Requests/sec in wrk output:\n%s", out)
	}
	rps, _ := strconv.ParseFloat(string(m[1]), 64)
	b.Logf("wrk %v %s (Host %q):\n%s", args, url, host, out)
	return rps
}

// BenchmarkFrontDoorWrk compares a minimal Go app hit directly with the
// same app through managed nginx (see BENCHMARK-NOTES.md). Run inside the
// sandbox: go test -run '^$' -bench FrontDoor -benchtime 1x ./nginx/
func BenchmarkFrontDoorWrk(b *testing.B) {
	bin := testkit.NeedBinary(b, "wrk", "apt-get install wrk")
	f := startFront(b, "")
	var conns atomic.Int64
	app := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("hello from keter bench\n"))
	}))
	// Counting new connections shows whether nginx keeps upstream
	// connections alive (a few dozen) or opens one per request.
	app.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	app.Start()
	b.Cleanup(app.Close)
	apps := []App{{Name: "bench", Dir: f.root, Ports: one(map[int]int{0: portOf(b, app)}),
		Config: &bundle.AppConfig{Stanzas: []bundle.Stanza{webapp("bench.test")}}}}
	if err := f.m.Apply(b.Context(), apps); err != nil {
		b.Fatal(err)
	}
	c := client(fmt.Sprintf("127.0.0.1:%d", f.port))
	eventually(b, "bench app through nginx", func() error {
		a, err := get(c, fmt.Sprintf("http://x:%d/", f.port), map[string]string{"Host": "bench.test"})
		if err != nil || a.status != 200 {
			return fmt.Errorf("%+v %v", a, err)
		}
		return nil
	})
	for i := 0; i < b.N; i++ {
		direct := wrk(b, bin, app.URL+"/", "")
		before := conns.Load()
		proxied := wrk(b, bin, fmt.Sprintf("http://127.0.0.1:%d/", f.port), "bench.test")
		b.ReportMetric(float64(conns.Load()-before), "upstream-conns")
		b.ReportMetric(direct, "direct-req/s")
		b.ReportMetric(proxied, "nginx-req/s")
		b.ReportMetric(proxied/direct, "ratio")
	}
}
