package portmap

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Generation is the kernel's nftables ruleset generation. Every committed
// change to any table bumps it (nft, the units' hooks, keter's own
// updates, a flush of the whole ruleset), so a map read at one generation
// is unchanged while the generation is. Asking costs one small netlink
// message; reading the map back costs every element (a thousand with a
// thousand apps, about once a second).
func (m *Map) Generation() (uint32, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.gen == nil {
		c, err := netlink.Dial(unix.NETLINK_NETFILTER, nil)
		if err != nil {
			return 0, fmt.Errorf("reading the nftables generation: %w", err)
		}
		m.gen = c
	}
	msgs, err := m.gen.Execute(netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETGEN),
			Flags: netlink.Request,
		},
		Data: []byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, 0}, // struct nfgenmsg
	})
	if err != nil {
		m.gen.Close()
		m.gen = nil
		return 0, fmt.Errorf("reading the nftables generation: %w", err)
	}
	for _, msg := range msgs {
		if len(msg.Data) < 4 {
			continue
		}
		ad, err := netlink.NewAttributeDecoder(msg.Data[4:])
		if err != nil {
			return 0, fmt.Errorf("reading the nftables generation: %w", err)
		}
		ad.ByteOrder = binary.BigEndian
		for ad.Next() {
			if ad.Type() == unix.NFTA_GEN_ID {
				return ad.Uint32(), nil
			}
		}
	}
	return 0, errors.New("reading the nftables generation: the kernel's answer has no generation")
}
