package sockdiag

import (
	"net"
	"net/netip"
	"os"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/keter-systemd/keter/internal/testkit"
)

func pair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	client, err = net.Dial("tcp4", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, err = l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

func find(t *testing.T, local, remote net.Addr) Socket {
	t.Helper()
	socks, err := Dump(unix.AF_INET, 1<<StateEstablished)
	if err != nil {
		t.Fatal(err)
	}
	l, r := netip.MustParseAddrPort(local.String()), netip.MustParseAddrPort(remote.String())
	for _, s := range socks {
		if s.Local == l && s.Remote == r {
			return s
		}
	}
	t.Fatalf("no socket %s -> %s among %d", l, r, len(socks))
	return Socket{}
}

func TestDumpSeesQueues(t *testing.T) {
	client, server := pair(t)
	if _, err := client.Write([]byte("GET / HTTP/1.1\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	s := find(t, server.LocalAddr(), server.RemoteAddr())
	if s.RecvQ == 0 {
		t.Errorf("server socket: RecvQ 0 with an unread request: %+v", s)
	}
	if s.UID != uint32(os.Getuid()) {
		t.Errorf("UID = %d, want %d", s.UID, os.Getuid())
	}
	if s.CgroupID == 0 {
		t.Errorf("no cgroup id: %+v", s)
	}
}

// TestServingCountsExactly: connections accepted or waiting in the
// listener's queue count, on both families; closed ones and other ports
// do not.
func TestServingCountsExactly(t *testing.T) {
	l4, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l4.Close()
	port := l4.Addr().(*net.TCPAddr).Port
	l6, err := net.Listen("tcp6", net.JoinHostPort("::1", strconv.Itoa(port)))
	if err != nil {
		testkit.Missing(t, "no IPv6 loopback: %v", err)
	}
	defer l6.Close()
	other, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	count := func(want int) {
		t.Helper()
		var n int
		for range 50 { // a close reaches the listener's end a moment later
			if n, err = Serving(port); err != nil {
				t.Fatal(err)
			}
			if n == want {
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Fatalf("Serving(%d) = %d, want %d", port, n, want)
	}
	count(0)
	var conns []net.Conn
	dial := func(addr string) net.Conn {
		t.Helper()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		return c
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	dial(l4.Addr().String()) // never accepted: still the listener's to serve
	accepted := dial(l6.Addr().String())
	srv, err := l6.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	dial(other.Addr().String())
	count(2)
	accepted.Close()
	srv.Close()
	count(1)
}

// TestDumpPortFilters: the kernel returns the listeners of the port asked
// for, and no other.
func TestDumpPortFilters(t *testing.T) {
	var ports []uint16
	for range 3 {
		l, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		ports = append(ports, uint16(l.Addr().(*net.TCPAddr).Port))
	}
	all, err := Dump(unix.AF_INET, 1<<StateListen)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) < len(ports) {
		t.Fatalf("Dump saw %d listeners, fewer than the %d opened", len(all), len(ports))
	}
	for _, p := range ports {
		socks, err := DumpPort(unix.AF_INET, 1<<StateListen, p)
		if err != nil {
			t.Fatal(err)
		}
		if len(socks) != 1 || socks[0].Local.Port() != p || socks[0].State != StateListen {
			t.Errorf("DumpPort(%d) = %+v, want its one listener", p, socks)
		}
	}
}
