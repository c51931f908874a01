package e2e

import (
	"fmt"
	"math/rand/v2"
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
