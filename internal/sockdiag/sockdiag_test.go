package sockdiag

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"syscall"
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

func TestDumpSeesQueuesAndTimes(t *testing.T) {
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
	buf := make([]byte, 64)
	if _, err := server.Read(buf); err != nil {
		t.Fatal(err)
	}
	if _, err := server.Write([]byte("HTTP/1.1 200 OK\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	c := find(t, client.LocalAddr(), client.RemoteAddr())
	if c.SinceRecv > c.SinceSent {
		t.Errorf("client: answer received before the request was sent? %+v", c)
	}
	if c.SinceSent < 40*time.Millisecond {
		t.Errorf("client: sent %s ago, want >= 40ms", c.SinceSent)
	}
}

func TestDestroyAbortsBothEnds(t *testing.T) {
	if os.Geteuid() != 0 {
		testkit.Missing(t, "destroying sockets needs CAP_NET_ADMIN (root)")
	}
	client, server := pair(t)
	s := find(t, client.LocalAddr(), client.RemoteAddr())
	if err := Destroy(s); errors.Is(err, ErrNotSupported) {
		testkit.Missing(t, "%v", err)
	} else if err != nil {
		t.Fatal(err)
	}
	server.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := server.Read(make([]byte, 1)); err == nil || (!errors.Is(err, syscall.ECONNRESET) && err != io.EOF) {
		t.Errorf("server read after destroy: %v, want a reset", err)
	}
	if _, err := client.Write([]byte("x")); err == nil {
		t.Errorf("client write after destroy succeeded")
	}
	// Gone: destroying it again is not an error.
	if err := Destroy(s); err != nil {
		t.Errorf("second destroy: %v", err)
	}
}
