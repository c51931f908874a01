package portmap

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// ctnetlink message types and attributes (linux/netfilter/nfnetlink*.h).
const (
	nfnlSubsysCTNetlink = 1
	ctGet               = 1
	ctDelete            = 2

	ctaTupleOrig  = 1
	ctaTupleReply = 2
	ctaTupleIP    = 1
	ctaTupleProto = 2
	ctaIPv4Src    = 1
	ctaProtoNum   = 1
	ctaProtoSrc   = 2

	nlaNested = 0x8000
)

// Forget deletes the kernel's connection tracking entries of connections
// the map sent to port, once the version behind it is gone. An entry
// outlives its connection (10 s after a reset, 2 min in TIME_WAIT); were
// nginx to open a new connection from the same local port meanwhile, a
// reset entry would hand it the old translation (conntrack reopens only
// entries the client itself closed), to a port where nothing listens, or
// where another program listens now. It returns how many it deleted.
func (m *Map) Forget(port int) (int, error) {
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, nil)
	if err != nil {
		return 0, fmt.Errorf("conntrack: %w", err)
	}
	defer c.Close()
	msgs, err := c.Execute(netlink.Message{
		Header: netlink.Header{Type: nfnlSubsysCTNetlink<<8 | ctGet, Flags: netlink.Request | netlink.Dump},
		Data:   nfgen(),
	})
	if err != nil {
		return 0, fmt.Errorf("reading conntrack entries: %w", err)
	}
	var errs []error
	n := 0
	for _, msg := range msgs {
		orig, ok := repliesFrom(msg.Data, port)
		if !ok {
			continue
		}
		del := append(nfgen(), attr(ctaTupleOrig|nlaNested, orig)...)
		_, err := c.Execute(netlink.Message{
			Header: netlink.Header{Type: nfnlSubsysCTNetlink<<8 | ctDelete, Flags: netlink.Request | netlink.Acknowledge},
			Data:   del,
		})
		if err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, err)
			continue
		}
		n++
	}
	if err := errors.Join(errs...); err != nil {
		return n, fmt.Errorf("deleting conntrack entries to port %d: %w", port, err)
	}
	return n, nil
}

// nfgen is a struct nfgenmsg for IPv4.
func nfgen() []byte { return []byte{unix.AF_INET, 0, 0, 0} }

func attr(typ uint16, data []byte) []byte {
	b, _ := netlink.MarshalAttributes([]netlink.Attribute{{Type: typ, Data: data}})
	return b
}

// repliesFrom reports whether a conntrack entry is TCP answered from
// 127.0.0.1:port (its reply tuple's source), and returns its original
// tuple, which names it for deletion.
func repliesFrom(msg []byte, port int) ([]byte, bool) {
	if len(msg) < 4 {
		return nil, false
	}
	ad, err := netlink.NewAttributeDecoder(msg[4:])
	if err != nil {
		return nil, false
	}
	var orig []byte
	match := false
	for ad.Next() {
		switch ad.Type() {
		case ctaTupleOrig:
			orig = ad.Bytes()
		case ctaTupleReply:
			match = tupleFrom(ad.Bytes(), port)
		}
	}
	return orig, match && orig != nil
}

func tupleFrom(tuple []byte, port int) bool {
	ad, err := netlink.NewAttributeDecoder(tuple)
	if err != nil {
		return false
	}
	loopback, tcp, from := false, false, false
	for ad.Next() {
		sub, err := netlink.NewAttributeDecoder(ad.Bytes())
		if err != nil {
			return false
		}
		switch ad.Type() {
		case ctaTupleIP:
			for sub.Next() {
				if sub.Type() == ctaIPv4Src {
					b := sub.Bytes()
					loopback = len(b) == 4 && b[0] == 127 && b[1] == 0 && b[2] == 0 && b[3] == 1
				}
			}
		case ctaTupleProto:
			for sub.Next() {
				switch sub.Type() {
				case ctaProtoNum:
					tcp = len(sub.Bytes()) == 1 && sub.Bytes()[0] == unix.IPPROTO_TCP
				case ctaProtoSrc:
					b := sub.Bytes()
					from = len(b) == 2 && int(binary.BigEndian.Uint16(b)) == port
				}
			}
		}
	}
	return loopback && tcp && from
}
