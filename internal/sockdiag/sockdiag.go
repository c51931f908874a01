// Package sockdiag reads the host's TCP sockets through the kernel's
// sock_diag netlink interface (what `ss` uses): keter counts the
// connections an old version still serves before it stops it, and asks
// which cgroup a local client of its status page belongs to. It only
// reads: keter never closes a connection nginx may be using.
package sockdiag

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

const (
	sockDiagByFamily = 20 // SOCK_DIAG_BY_FAMILY

	inetDiagCgroupID = 21 // INET_DIAG_CGROUP_ID: the socket's cgroup v2 id

	reqLen = 56 // struct inet_diag_req_v2
	msgLen = 72 // struct inet_diag_msg

	// StateEstablished is TCP_ESTABLISHED.
	StateEstablished = 1
	// StateSynRecv is TCP_SYN_RECV: a connection the listener has not
	// finished accepting.
	StateSynRecv = 3
	// StateListen is TCP_LISTEN.
	StateListen = 10
)

// Socket is one TCP socket as the kernel describes it.
type Socket struct {
	Family        uint8 // unix.AF_INET or unix.AF_INET6
	State         uint8
	Local, Remote netip.AddrPort
	RecvQ, SendQ  uint32 // bytes not yet read by the owner; not yet acked by the peer
	UID           uint32
	Inode         uint32
	CgroupID      uint64 // 0 when the kernel did not say
}

// Dump lists the TCP sockets of family in any of states (a bit mask of
// 1<<state; 0 means all).
func Dump(family uint8, states uint32) ([]Socket, error) {
	return dump(request(family, states))
}

// DumpPort is Dump of the sockets whose local port is port, filtered by
// the kernel: a host with a thousand apps has a thousand listeners, and a
// readiness check wants one.
func DumpPort(family uint8, states uint32, port uint16) ([]Socket, error) {
	return dump(append(request(family, states), portFilter(port)...))
}

func dump(req []byte) ([]Socket, error) {
	c, err := netlink.Dial(unix.NETLINK_SOCK_DIAG, nil)
	if err != nil {
		return nil, fmt.Errorf("sock_diag: %w", err)
	}
	defer c.Close()
	msgs, err := c.Execute(netlink.Message{
		Header: netlink.Header{Type: sockDiagByFamily, Flags: netlink.Request | netlink.Dump},
		Data:   req,
	})
	if err != nil {
		return nil, fmt.Errorf("sock_diag dump: %w", err)
	}
	out := make([]Socket, 0, len(msgs))
	for _, m := range msgs {
		s, ok := parse(m.Data)
		if ok {
			out = append(out, s)
		}
	}
	return out, nil
}

// Serving counts the connections whose local end is one of ports, in
// both address families: what the programs listening there still serve,
// accepted or waiting to be. Connections that are closing are not
// counted: their peer is done with them.
func Serving(ports ...int) (int, error) {
	want := map[uint16]bool{}
	for _, p := range ports {
		want[uint16(p)] = true
	}
	n := 0
	for _, fam := range []uint8{unix.AF_INET, unix.AF_INET6} {
		socks, err := Dump(fam, 1<<StateEstablished|1<<StateSynRecv)
		if err != nil {
			return 0, err
		}
		for _, s := range socks {
			if want[s.Local.Port()] {
				n++
			}
		}
	}
	return n, nil
}

// request is a struct inet_diag_req_v2 for a dump.
func request(family uint8, states uint32) []byte {
	if states == 0 {
		states = ^uint32(0)
	}
	b := make([]byte, reqLen)
	b[0] = family
	b[1] = unix.IPPROTO_TCP
	binary.NativeEndian.PutUint32(b[4:], states)
	return b
}

// portFilter is an INET_DIAG_REQ_BYTECODE attribute that keeps the
// sockets whose local port is port: one INET_DIAG_BC_S_EQ op (its
// operand in the next op's "no"), which jumps to the program's end (keep)
// when it holds and past it (drop) when not, as ss builds it.
func portFilter(port uint16) []byte {
	const (
		attrBytecode = 1  // INET_DIAG_REQ_BYTECODE
		bcSrcEq      = 11 // INET_DIAG_BC_S_EQ
		progLen      = 8  // two struct inet_diag_bc_op
	)
	b := make([]byte, 4+progLen)
	binary.NativeEndian.PutUint16(b[0:], uint16(len(b))) // nla_len
	binary.NativeEndian.PutUint16(b[2:], attrBytecode)   // nla_type
	op := b[4:]
	op[0], op[1] = bcSrcEq, progLen                  // code, yes
	binary.NativeEndian.PutUint16(op[2:], progLen+4) // no
	binary.NativeEndian.PutUint16(op[6:], port)      // the operand
	return b
}

func parse(b []byte) (Socket, bool) {
	if len(b) < msgLen {
		return Socket{}, false
	}
	s := Socket{Family: b[0], State: b[1]}
	id := b[4:52]
	lp, rp := binary.BigEndian.Uint16(id[0:]), binary.BigEndian.Uint16(id[2:])
	s.Local = netip.AddrPortFrom(addr(s.Family, id[4:20]), lp)
	s.Remote = netip.AddrPortFrom(addr(s.Family, id[20:36]), rp)
	s.RecvQ = binary.NativeEndian.Uint32(b[56:])
	s.SendQ = binary.NativeEndian.Uint32(b[60:])
	s.UID = binary.NativeEndian.Uint32(b[64:])
	s.Inode = binary.NativeEndian.Uint32(b[68:])
	ad, err := netlink.NewAttributeDecoder(b[msgLen:])
	if err != nil {
		return s, true
	}
	ad.ByteOrder = binary.NativeEndian
	for ad.Next() {
		if ad.Type() == inetDiagCgroupID {
			s.CgroupID = ad.Uint64()
		}
	}
	return s, true
}

func addr(family uint8, b []byte) netip.Addr {
	if family == unix.AF_INET {
		return netip.AddrFrom4([4]byte(b[:4]))
	}
	return netip.AddrFrom16([16]byte(b[:16]))
}

// ServingEach is Serving for each of ports, in one pass over the kernel's
// table: every port is in the result, 0 when nothing is served there.
func ServingEach(ports []int) (map[int]int, error) {
	out := make(map[int]int, len(ports))
	for _, p := range ports {
		out[p] = 0
	}
	for _, fam := range []uint8{unix.AF_INET, unix.AF_INET6} {
		socks, err := Dump(fam, 1<<StateEstablished|1<<StateSynRecv)
		if err != nil {
			return nil, err
		}
		for _, s := range socks {
			if n, ok := out[int(s.Local.Port())]; ok {
				out[int(s.Local.Port())] = n + 1
			}
		}
	}
	return out, nil
}
