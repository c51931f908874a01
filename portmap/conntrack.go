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
	ctaProtoDst   = 3

	ctaProtoInfo         = 4
	ctaID                = 12
	ctaProtoInfoTCP      = 1
	ctaProtoInfoTCPState = 1

	// TCP conntrack states (enum tcp_conntrack).
	tcpEstablished = 3
	tcpTimeWait    = 7
	tcpClose       = 8

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
	n, err := forgetWhere(port, func(translation) bool { return true })
	if err != nil {
		return n, fmt.Errorf("deleting conntrack entries to port %d: %w", port, err)
	}
	return n, nil
}

// forgetWhere deletes the entries answered from port that match; it
// returns how many it deleted.
func forgetWhere(port int, match func(translation) bool) (int, error) {
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, nil)
	if err != nil {
		return 0, fmt.Errorf("conntrack: %w", err)
	}
	defer c.Close()
	entries, err := translations(c, port)
	if err != nil {
		return 0, err
	}
	var errs []error
	n := 0
	for _, e := range entries {
		if !match(e) {
			continue
		}
		if err := forget(c, e); err != nil {
			errs = append(errs, err)
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}

// translation is one conntrack entry of a TCP connection on loopback
// answered from a given port: the ports the client dialled from and to
// (before the map's translation), and the reply tuple and id, which name
// the entry for deletion. Not the original tuple: nginx may open a new
// connection from the same local port to the same front between keter's
// read and its delete, whose entry has the same original tuple (and,
// made in the slot the old one freed, the same id, which hashes only
// that), while its reply tuple names the port the map sends it to now.
type translation struct {
	from, to int
	state    uint8 // TCP conntrack state
	reply    []byte
	id       []byte
}

// finished reports an entry whose connection is over but which would
// still hand its translation to a new connection from the same port.
func (t translation) finished() bool { return t.state == tcpTimeWait || t.state == tcpClose }

// translations reads the conntrack entries answered from 127.0.0.1:port.
// Only they tie a client's end to the port the map sent it to: when two
// fronts lead to one port, the kernel may also change the client's source
// port on the way (two clients' tuples would clash there), so the server's
// end does not name the client's.
func translations(c *netlink.Conn, port int) ([]translation, error) {
	msgs, err := c.Execute(netlink.Message{
		Header: netlink.Header{Type: nfnlSubsysCTNetlink<<8 | ctGet, Flags: netlink.Request | netlink.Dump},
		Data:   nfgen(),
	})
	if err != nil {
		return nil, fmt.Errorf("reading conntrack entries: %w", err)
	}
	var out []translation
	for _, msg := range msgs {
		if len(msg.Data) < 4 {
			continue
		}
		ad, err := netlink.NewAttributeDecoder(msg.Data[4:])
		if err != nil {
			continue
		}
		var t translation
		var orig, reply tuple
		for ad.Next() {
			switch ad.Type() {
			case ctaTupleOrig:
				orig = parseTuple(ad.Bytes())
			case ctaTupleReply:
				t.reply = ad.Bytes()
				reply = parseTuple(t.reply)
			case ctaProtoInfo:
				t.state = tcpState(ad.Bytes())
			case ctaID:
				t.id = ad.Bytes()
			}
		}
		if t.reply == nil || !orig.tcp || !reply.tcp || !reply.loopback || reply.src != port {
			continue
		}
		t.from, t.to = orig.src, orig.dst
		out = append(out, t)
	}
	return out, nil
}

// tcpState reads CTA_PROTOINFO_TCP_STATE from a CTA_PROTOINFO.
func tcpState(b []byte) uint8 {
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return 0
	}
	for ad.Next() {
		if ad.Type() != ctaProtoInfoTCP {
			continue
		}
		sub, err := netlink.NewAttributeDecoder(ad.Bytes())
		if err != nil {
			return 0
		}
		for sub.Next() {
			if sub.Type() == ctaProtoInfoTCPState && len(sub.Bytes()) == 1 {
				return sub.Bytes()[0]
			}
		}
	}
	return 0
}

// forget deletes one entry; one already gone counts.
func forget(c *netlink.Conn, t translation) error {
	data := append(nfgen(), attr(ctaTupleReply|nlaNested, t.reply)...)
	if t.id != nil {
		data = append(data, attr(ctaID, t.id)...)
	}
	_, err := c.Execute(netlink.Message{
		Header: netlink.Header{Type: nfnlSubsysCTNetlink<<8 | ctDelete, Flags: netlink.Request | netlink.Acknowledge},
		Data:   data,
	})
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	return err
}

// nfgen is a struct nfgenmsg for IPv4.
func nfgen() []byte { return []byte{unix.AF_INET, 0, 0, 0} }

func attr(typ uint16, data []byte) []byte {
	b, _ := netlink.MarshalAttributes([]netlink.Attribute{{Type: typ, Data: data}})
	return b
}

// tuple is what keter reads of a conntrack tuple.
type tuple struct {
	loopback bool // source 127.0.0.1
	tcp      bool
	src, dst int
}

func parseTuple(b []byte) tuple {
	var t tuple
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return t
	}
	for ad.Next() {
		sub, err := netlink.NewAttributeDecoder(ad.Bytes())
		if err != nil {
			return tuple{}
		}
		switch ad.Type() {
		case ctaTupleIP:
			for sub.Next() {
				if sub.Type() == ctaIPv4Src {
					b := sub.Bytes()
					t.loopback = len(b) == 4 && b[0] == 127 && b[1] == 0 && b[2] == 0 && b[3] == 1
				}
			}
		case ctaTupleProto:
			for sub.Next() {
				switch sub.Type() {
				case ctaProtoNum:
					t.tcp = len(sub.Bytes()) == 1 && sub.Bytes()[0] == unix.IPPROTO_TCP
				case ctaProtoSrc, ctaProtoDst:
					p := sub.Bytes()
					if len(p) != 2 {
						continue
					}
					if sub.Type() == ctaProtoSrc {
						t.src = int(binary.BigEndian.Uint16(p))
					} else {
						t.dst = int(binary.BigEndian.Uint16(p))
					}
				}
			}
		}
	}
	return t
}
