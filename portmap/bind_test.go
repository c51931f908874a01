package portmap

import (
	"bufio"
	"context"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keter-systemd/keter/internal/testkit"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// ask connects to port from bash and returns the first line answered, or
// "refused".
const askScript = `if ! { exec 3<>/dev/tcp/127.0.0.1/%d; } 2>/dev/null; then echo refused; exit 0; fi; echo who >&3; head -n1 <&3`

// TestBindRedirectsOnlyThatCgroup: the map redirects a process of the bound
// cgroup, and no other one: not this test, whatever its user.
func TestBindRedirectsOnlyThatCgroup(t *testing.T) {
	m := needTable(t)
	ctx := context.Background()
	a := nameServer(t, "A")
	front := testkit.FreePort(t)
	if err := m.Apply(ctx, map[int]int{front: a}); err != nil {
		t.Fatal(err)
	}
	out, err := testkit.InCgroup(t, fmt.Sprintf(askScript, front), func(cg string) {
		if err := m.Bind(ctx, cg); err != nil {
			t.Fatal(err)
		}
	})
	if err != nil || strings.TrimSpace(out) != "A" {
		t.Fatalf("a process of the bound cgroup got %q %v, want A", out, err)
	}
	if c, err := dial(t, front); err == nil {
		t.Fatalf("this test, outside the bound cgroup, was redirected to %s", c.RemoteAddr())
	}
	other, err := exec.Command("setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "bash", "-c", fmt.Sprintf(askScript, front)).CombinedOutput()
	if err != nil || strings.TrimSpace(string(other)) != "refused" {
		t.Fatalf("another user outside the bound cgroup got %q %v, want refused", other, err)
	}
}

// TestStartHookBindsItsOwnCgroup: the hook nginx's unit runs before each
// start binds the rule to the cgroup it runs in.
func TestStartHookBindsItsOwnCgroup(t *testing.T) {
	m := needTable(t)
	ctx := context.Background()
	a := nameServer(t, "A")
	front := testkit.FreePort(t)
	if err := m.Apply(ctx, map[int]int{front: a}); err != nil {
		t.Fatal(err)
	}
	hooks := t.TempDir()
	for name, body := range Hooks() {
		if err := os.WriteFile(filepath.Join(hooks, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	script := strings.Join(StartHook(hooks, m.Table()), " ") + " || exit 1\n" + fmt.Sprintf(askScript, front)
	out, err := testkit.InCgroup(t, script, func(string) {})
	if err != nil || strings.TrimSpace(out) != "A" {
		t.Fatalf("after the start hook, a process of its cgroup got %q %v, want A", out, err)
	}
	cur, err := m.Current(ctx)
	if err != nil || cur[front] != a {
		t.Fatalf("the hook changed the map: %v %v", cur, err)
	}
	if c, err := dial(t, front); err == nil {
		t.Fatalf("this test, outside the hook's cgroup, was redirected to %s", c.RemoteAddr())
	}
}

// TestSwitchLeavesOpenConnections: after a switch, a kept idle
// connection and a busy one both still reach the old port (nginx retires
// them itself); a new connection reaches the new one.
func TestSwitchLeavesOpenConnections(t *testing.T) {
	m := needNft(t)
	ctx := context.Background()
	a := nameServer(t, "A")
	slow := slowServer(t, "A")
	b := nameServer(t, "B")
	front, front2 := testkit.FreePort(t), testkit.FreePort(t)
	if err := m.Apply(ctx, map[int]int{front: a, front2: slow}); err != nil {
		t.Fatal(err)
	}
	idle, err := dial(t, front)
	if err != nil {
		t.Fatal(err)
	}
	if got := idle.ask(t); got != "A" {
		t.Fatalf("got %q", got)
	}
	busy, err := dial(t, front2)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := busy.Write([]byte("who\n")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	if err := m.Apply(ctx, map[int]int{front: b, front2: b}); err != nil {
		t.Fatal(err)
	}
	for f, p := range map[int]int{front: a, front2: slow} {
		if _, err := m.ForgetFinished(p, f); err != nil {
			t.Fatal(err)
		}
	}
	busy.SetDeadline(time.Now().Add(5 * time.Second))
	if s, err := busy.r.ReadString('\n'); err != nil || s != "A\n" {
		t.Fatalf("the busy connection: %q %v, want its answer from the old port", s, err)
	}
	if got := idle.ask(t); got != "A" {
		t.Fatalf("the kept connection after the switch: %q, want the old port's answer", got)
	}
	if got := whoAt(t, front); got != "B" {
		t.Fatalf("a new connection reached %q, want B", got)
	}
}

// slowServer answers each line after 300 ms.
func slowServer(t *testing.T, name string) int {
	t.Helper()
	return server(t, name, 300*time.Millisecond)
}

// TestStartHookMatchesBind: the script the package ships writes the rule
// Bind writes.
func TestStartHookMatchesBind(t *testing.T) {
	want := strings.Join(append(skeleton("$1"), ruleLines("$1", `"${m:+$m/}$p"`, "$l")...), "\n")
	if !strings.Contains(startHook, want) {
		t.Fatalf("start-hook.sh does not hold the rule Bind makes:\n%s", want)
	}
}

// TestForgetStaleTranslation: a connection the old version reset leaves a
// conntrack entry that would send a new connection from the same local
// port to the old version, bypassing the map; Forget deletes it.
func TestForgetStaleTranslation(t *testing.T) {
	m := needNft(t)
	ctx := context.Background()
	front := testkit.FreePort(t)
	resetter := func(name string) int {
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
					r := bufio.NewReader(c)
					if _, err := r.ReadString('\n'); err != nil {
						return
					}
					c.Write([]byte(name + "\n"))
					if _, err := r.ReadString('\n'); err != nil {
						return
					}
					// The second request: a reset, as a version stopped mid-request.
					c.(*net.TCPConn).SetLinger(0)
					c.Close()
				}()
			}
		}()
		return l.Addr().(*net.TCPAddr).Port
	}
	a, b := resetter("A"), resetter("B")
	local := testkit.FreePort(t)
	reset := func(c *conn) {
		c.Write([]byte("again\n"))
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.r.ReadString('\n'); err == nil {
			t.Fatal("no reset")
		}
		c.Close()
	}
	for _, forget := range []bool{false, true} {
		if err := m.Apply(ctx, map[int]int{front: a}); err != nil {
			t.Fatal(err)
		}
		c := dialFrom(t, local, front)
		if got := c.ask(t); got != "A" {
			t.Fatalf("got %q, want A", got)
		}
		reset(c)
		if err := m.Apply(ctx, map[int]int{front: b}); err != nil {
			t.Fatal(err)
		}
		if forget {
			if n, err := m.Forget(a); err != nil || n == 0 {
				t.Fatalf("Forget(%d) = %d, %v; want the reset connection's entry", a, n, err)
			}
		}
		c2 := dialFrom(t, local, front)
		got := c2.ask(t)
		reset(c2) // and frees the local port for the next round
		t.Logf("forget=%v: a new connection from the same local port reached %s", forget, got)
		if forget && got != "B" {
			t.Fatalf("after Forget, got %q, want B", got)
		}
		if !forget && got != "A" {
			t.Logf("the kernel reopened the reset entry itself (got %q): Forget is insurance here", got)
		}
		m.Forget(a)
		m.Forget(b)
	}
}

// TestForgetFinishedForgetsResetByServer: a connection the server reset after
// answering leaves a conntrack entry that would send a new connection from
// the same local port to it again after the front moved on (conntrack
// reopens entries with their translation unless the client closed or
// reset them). ForgetFinished forgets them.
func TestForgetFinishedForgetsResetByServer(t *testing.T) {
	m := needNft(t)
	ctx := context.Background()
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
				if _, err := bufio.NewReader(c).ReadString('\n'); err == nil {
					c.Write([]byte("R\n"))
					time.Sleep(20 * time.Millisecond)
					c.(*net.TCPConn).SetLinger(0) // Close resets
				}
			}()
		}
	}()
	closer := l.Addr().(*net.TCPAddr).Port
	p := nameServer(t, "P")
	front, local := testkit.FreePort(t), testkit.FreePort(t)
	if err := m.Apply(ctx, map[int]int{front: closer}); err != nil {
		t.Fatal(err)
	}
	first := dialFrom(t, local, front)
	if got := first.ask(t); got != "R" {
		t.Fatalf("got %q", got)
	}
	if _, err := first.r.ReadString('\n'); err == nil {
		t.Fatal("the server kept the connection")
	}
	first.Close() // after the reset: the client sends nothing
	time.Sleep(50 * time.Millisecond)
	if err := m.Apply(ctx, map[int]int{front: p}); err != nil {
		t.Fatal(err)
	}
	if n, err := m.ForgetFinished(closer, front); err != nil {
		t.Fatalf("ForgetFinished = %d, %v; want the reset connection's entry", n, err)
	}
	if got := dialFrom(t, local, front).ask(t); got != "P" {
		t.Fatalf("a new connection from the same local port after the switch reached %q, want P", got)
	}
}

// TestStopHookTakesEveryFrontOfItsPort: a unit stopped for good takes
// its own front and the spares that point at its port out of the map,
// and leaves fronts pointing elsewhere (another instance, or a newer
// version keter switched its own front to).
func TestStopHookTakesEveryFrontOfItsPort(t *testing.T) {
	m := needNft(t)
	ctx := context.Background()
	hooks := t.TempDir()
	for name, body := range Hooks() {
		if err := os.WriteFile(filepath.Join(hooks, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// systemctl as the hook asks it: a stop job is under way for unit,
	// or not.
	bin := t.TempDir()
	fake := "#!/bin/sh\n[ \"$STOPPING\" = \"$4\" ] && echo \"1 $4 stop running\"\nexit 0\n"
	if err := os.WriteFile(filepath.Join(bin, "systemctl"), []byte(fake), 0o755); err != nil {
		t.Fatal(err)
	}
	hook := func(front, port int, unit, stopping string) {
		t.Helper()
		args := StopHook(hooks, m.Table(), front, port, unit)
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"), "STOPPING="+stopping, "SERVICE_RESULT=success")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("hook: %v %s", err, out)
		}
	}
	f1, f2, f3, f4 := 41001, 41002, 41003, 41004
	p1, p2 := 42001, 42002
	if err := m.Apply(ctx, map[int]int{f1: p1, f2: p2, f3: p1, f4: p2}); err != nil {
		t.Fatal(err)
	}
	hook(f1, p1, "a.service", "") // a restart: no stop job
	if cur, _ := m.Current(ctx); len(cur) != 4 {
		t.Fatalf("a restart changed the map: %v", cur)
	}
	hook(f1, p1, "a.service", "a.service")
	if cur, _ := m.Current(ctx); !maps.Equal(cur, map[int]int{f2: p2, f4: p2}) {
		t.Fatalf("after instance 1 stopped: %v, want only instance 2's fronts", cur)
	}
	// keter already switched f2 to a newer version's port: it stays.
	if err := m.Apply(ctx, map[int]int{f2: 42003, f4: p2}); err != nil {
		t.Fatal(err)
	}
	hook(f2, p2, "b.service", "b.service")
	if cur, _ := m.Current(ctx); !maps.Equal(cur, map[int]int{f2: 42003}) {
		t.Fatalf("after instance 2 stopped: %v, want the newer version's front only", cur)
	}
}

// TestForgetSparesAReopenedEntry: between reading the table and deleting
// a finished entry, nginx may open a new connection from the same local
// port to the same front, which makes a new entry with the same original
// tuple. The delete must not take the new one: its answer, coming back
// first after the delete, would then miss the translation back to the
// front, and nginx would wait for it until its timeout (a request hung
// at a switch under load).
func TestForgetSparesAReopenedEntry(t *testing.T) {
	m := needNft(t)
	ctx := context.Background()
	a, b := nameServer(t, "A"), slowServer(t, "B")
	front, local := testkit.FreePort(t), testkit.FreePort(t)
	if err := m.Apply(ctx, map[int]int{front: a}); err != nil {
		t.Fatal(err)
	}
	first := dialFrom(t, local, front)
	if got := first.ask(t); got != "A" {
		t.Fatalf("got %q, want A", got)
	}
	first.Conn.(*net.TCPConn).SetLinger(0) // the client resets: a finished entry
	first.Close()
	if err := m.Apply(ctx, map[int]int{front: b}); err != nil {
		t.Fatal(err)
	}
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	listed, err := translations(c, a)
	if err != nil {
		t.Fatal(err)
	}
	var finished []translation
	for _, e := range listed {
		if e.finished() && e.from == local && e.to == front {
			finished = append(finished, e)
		}
	}
	if len(finished) == 0 {
		t.Fatalf("no finished entry from port %d to front %d among %+v", local, front, listed)
	}
	second := dialFrom(t, local, front)
	second.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := second.Write([]byte("who\n")); err != nil {
		t.Fatal(err)
	}
	// B answers 300 ms later: its answer is the first packet after the delete.
	for _, e := range finished {
		if err := forget(c, e); err != nil {
			t.Fatal(err)
		}
	}
	if s, err := second.r.ReadString('\n'); err != nil || s != "B\n" {
		t.Fatalf("the new connection from the same local port got %q, %v; want B's answer", s, err)
	}
}

// dialFrom connects to front from the given local port, waiting for the
// port to be free again after an earlier connection from it.
func dialFrom(t *testing.T, local, front int) *conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: local}, Timeout: 2 * time.Second}
	var c net.Conn
	var err error
	for range 50 {
		if c, err = d.Dial("tcp", "127.0.0.1:"+strconv.Itoa(front)); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &conn{c, bufio.NewReader(c)}
}
