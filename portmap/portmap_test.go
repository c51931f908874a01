package portmap

import (
	"bufio"
	"context"
	"net"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/keter-systemd/keter/internal/testkit"
)

// nameServer answers each line it reads with its name, on a fresh port.
func nameServer(t *testing.T, name string) int {
	t.Helper()
	return server(t, name, 0)
}

func server(t *testing.T, name string, delay time.Duration) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					if _, err := r.ReadString('\n'); err != nil {
						return
					}
					time.Sleep(delay)
					if _, err := c.Write([]byte(name + "\n")); err != nil {
						return
					}
				}
			}()
		}
	}()
	return l.Addr().(*net.TCPAddr).Port
}

type conn struct {
	net.Conn
	r *bufio.Reader
}

func dial(t *testing.T, port int) (*conn, error) {
	t.Helper()
	c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), 2*time.Second)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Close() })
	return &conn{c, bufio.NewReader(c)}, nil
}

func (c *conn) ask(t *testing.T) string {
	t.Helper()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte("who\n")); err != nil {
		t.Fatal(err)
	}
	s, err := c.r.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	return s[:len(s)-1]
}

func whoAt(t *testing.T, port int) string {
	t.Helper()
	c, err := dial(t, port)
	if err != nil {
		t.Fatalf("connecting to front port %d: %v", port, err)
	}
	return c.ask(t)
}

// needNft sets a map up and binds it to this test process's own cgroup,
// as keter binds it to nginx's.
func needNft(t *testing.T) *Map {
	t.Helper()
	m := needTable(t)
	if err := m.Bind(context.Background(), testkit.OwnCgroup(t)); err != nil {
		t.Fatal(err)
	}
	return m
}

func needTable(t *testing.T) *Map {
	t.Helper()
	testkit.NeedBinary(t, "nft", "apt-get install nftables; scripts/deps.sh does")
	if os.Geteuid() != 0 {
		testkit.Missing(t, "nftables needs root")
	}
	m := New("ktest_" + testkit.Token())
	ctx := context.Background()
	if err := m.Setup(ctx); err != nil {
		testkit.Missing(t, "nftables unusable here: %v", err)
	}
	t.Cleanup(func() {
		if err := m.Remove(context.Background()); err != nil {
			t.Errorf("removing table: %v", err)
		}
	})
	return m
}

func TestSwitchKeepsOpenConnections(t *testing.T) {
	m := needNft(t)
	ctx := context.Background()
	a, b := nameServer(t, "A"), nameServer(t, "B")
	front := testkit.FreePort(t)

	if err := m.Apply(ctx, map[int]int{front: a}); err != nil {
		t.Fatal(err)
	}
	if got := whoAt(t, front); got != "A" {
		t.Fatalf("front port %d reached %q, want A", front, got)
	}
	open, err := dial(t, front)
	if err != nil {
		t.Fatal(err)
	}
	if got := open.ask(t); got != "A" {
		t.Fatalf("open connection reached %q, want A", got)
	}

	if err := m.Apply(ctx, map[int]int{front: b}); err != nil {
		t.Fatal(err)
	}
	if got := whoAt(t, front); got != "B" {
		t.Fatalf("after the switch a new connection reached %q, want B", got)
	}
	if got := open.ask(t); got != "A" {
		t.Fatalf("after the switch the open connection reached %q, want A (it must finish where it began)", got)
	}
	cur, err := m.Current(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(cur) != 1 || cur[front] != b {
		t.Fatalf("Current = %v, want {%d: %d}", cur, front, b)
	}
}

func TestSetupKeepsElementsAndApplyRemoves(t *testing.T) {
	m := needNft(t)
	ctx := context.Background()
	a := nameServer(t, "A")
	front, other := testkit.FreePort(t), testkit.FreePort(t)
	if err := m.Apply(ctx, map[int]int{front: a, other: a}); err != nil {
		t.Fatal(err)
	}
	// keter restarting: Setup again must not drop what serves, nor the
	// binding to nginx.
	if err := m.Setup(ctx); err != nil {
		t.Fatal(err)
	}
	if got := whoAt(t, front); got != "A" {
		t.Fatalf("after a second Setup the front port reached %q, want A", got)
	}
	if err := m.Apply(ctx, map[int]int{other: a}); err != nil {
		t.Fatal(err)
	}
	if c, err := dial(t, front); err == nil {
		t.Fatalf("front port %d still connects (%s) after its element was removed", front, c.RemoteAddr())
	}
	cur, err := m.Current(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(cur) != 1 || cur[other] != a {
		t.Fatalf("Current = %v, want {%d: %d}", cur, other, a)
	}
}

func TestApplyRefusesNonPorts(t *testing.T) {
	m := New("unused")
	for _, want := range []map[int]int{{0: 80}, {80: 70000}, {-1: 5}} {
		if err := m.Apply(context.Background(), want); err == nil {
			t.Errorf("Apply(%v) = nil, want an error", want)
		}
	}
}

// TestGenerationMovesWithEveryChange: the generation stays while nothing
// changes and moves with keter's own updates and with nft's, to any table.
func TestGenerationMovesWithEveryChange(t *testing.T) {
	m := needTable(t)
	ctx := context.Background()
	g0, err := m.Generation()
	if err != nil {
		t.Fatal(err)
	}
	if g, err := m.Generation(); err != nil || g != g0 {
		t.Fatalf("Generation again with nothing changed = %d, %v; want %d", g, err, g0)
	}
	if err := m.Apply(ctx, map[int]int{testkit.FreePort(t): testkit.FreePort(t)}); err != nil {
		t.Fatal(err)
	}
	g1, err := m.Generation()
	if err != nil || g1 == g0 {
		t.Fatalf("Generation after Apply = %d, %v; want it moved from %d", g1, err, g0)
	}
	other := "ktest_" + testkit.Token()
	if out, err := exec.Command("nft", "add table ip "+other+"; delete table ip "+other).CombinedOutput(); err != nil {
		t.Fatalf("nft: %v: %s", err, out)
	}
	if g, err := m.Generation(); err != nil || g == g1 {
		t.Fatalf("Generation after nft changed another table = %d, %v; want it moved from %d", g, err, g1)
	}
}
