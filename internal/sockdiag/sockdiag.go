// Package sockdiag reads and closes the host's TCP sockets through the
// kernel's sock_diag netlink interface (what `ss` and `ss -K` use): keter
// closes nginx's idle kept connections to an old version at a switch, and
// asks which cgroup a local client of its status page belongs to. It
// needs CAP_NET_ADMIN to destroy sockets.
package sockdiag

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

const (
	sockDiagByFamily = 20 // SOCK_DIAG_BY_FAMILY
	sockDestroy      = 21 // SOCK_DESTROY

	inetDiagInfo     = 2  // INET_DIAG_INFO: struct tcp_info
	inetDiagCgroupID = 21 // INET_DIAG_CGROUP_ID: the socket's cgroup v2 id

	reqLen = 56 // struct inet_diag_req_v2
	msgLen = 72 // struct inet_diag_msg

	// StateEstablished is TCP_ESTABLISHED.
	StateEstablished = 1
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
	// Time since data was last sent and received, as tcp_info counts it
	// (in jiffies rounded to ms).
	SinceSent, SinceRecv time.Duration
	// Data segments received and sent over the connection's life.
	DataSegsIn, DataSegsOut uint32
	cookie                  [8]byte
	iface                   uint32
}

// ErrNotSupported means the kernel cannot destroy sockets
// (CONFIG_INET_DIAG_DESTROY).
var ErrNotSupported = errors.New("the kernel cannot destroy sockets (CONFIG_INET_DIAG_DESTROY)")

// Dump lists the TCP sockets of family in any of states (a bit mask of
// 1<<state; 0 means all).
func Dump(family uint8, states uint32) ([]Socket, error) {
	c, err := netlink.Dial(unix.NETLINK_SOCK_DIAG, nil)
	if err != nil {
		return nil, fmt.Errorf("sock_diag: %w", err)
	}
	defer c.Close()
	if states == 0 {
		states = ^uint32(0)
	}
	req := request(family, states, nil)
	req[2] = 1 << (inetDiagInfo - 1) // idiag_ext: ask for tcp_info
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

// Destroy closes s as `ss -K` does: its owner gets ECONNABORTED and the
// peer a reset.
func Destroy(s Socket) error {
	c, err := netlink.Dial(unix.NETLINK_SOCK_DIAG, nil)
	if err != nil {
		return fmt.Errorf("sock_diag: %w", err)
	}
	defer c.Close()
	_, err = c.Execute(netlink.Message{
		Header: netlink.Header{Type: sockDestroy, Flags: netlink.Request | netlink.Acknowledge},
		Data:   request(s.Family, 1<<s.State, &s),
	})
	if errors.Is(err, unix.EOPNOTSUPP) {
		return ErrNotSupported
	}
	if err != nil && !errors.Is(err, unix.ENOENT) { // gone already: fine
		return fmt.Errorf("destroying socket %s -> %s: %w", s.Local, s.Remote, err)
	}
	return nil
}

// request is a struct inet_diag_req_v2, for one socket when s is set.
func request(family uint8, states uint32, s *Socket) []byte {
	b := make([]byte, reqLen)
	b[0] = family
	b[1] = unix.IPPROTO_TCP
	binary.NativeEndian.PutUint32(b[4:], states)
	if s != nil {
		putID(b[8:], s)
	}
	return b
}

// putID writes a struct inet_diag_sockid (48 bytes): ports and addresses
// in network order, then the interface and the socket's cookie.
func putID(b []byte, s *Socket) {
	binary.BigEndian.PutUint16(b[0:], s.Local.Port())
	binary.BigEndian.PutUint16(b[2:], s.Remote.Port())
	putAddr(b[4:20], s.Local.Addr())
	putAddr(b[20:36], s.Remote.Addr())
	binary.NativeEndian.PutUint32(b[36:], s.iface)
	copy(b[40:48], s.cookie[:])
}

func putAddr(b []byte, a netip.Addr) {
	if a.Is4() {
		v := a.As4()
		copy(b, v[:])
		return
	}
	v := a.As16()
	copy(b, v[:])
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
	s.iface = binary.NativeEndian.Uint32(id[36:])
	copy(s.cookie[:], id[40:48])
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
		switch ad.Type() {
		case inetDiagInfo:
			// Offsets of struct tcp_info (linux/tcp.h).
			if info := ad.Bytes(); len(info) >= 56 {
				s.SinceSent = time.Duration(binary.NativeEndian.Uint32(info[44:])) * time.Millisecond
				s.SinceRecv = time.Duration(binary.NativeEndian.Uint32(info[52:])) * time.Millisecond
				if len(info) >= 160 {
					s.DataSegsIn = binary.NativeEndian.Uint32(info[152:])
					s.DataSegsOut = binary.NativeEndian.Uint32(info[156:])
				}
			}
		case inetDiagCgroupID:
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
