// Package portmap switches app versions without an nginx reload. nginx
// proxies each webapp to a stable front port that nothing listens on; an
// nftables DNAT map in the kernel sends new connections to that port on to
// the live version's own port. Changing one map element is atomic, and
// connections already open keep going where they went, so the old version
// finishes what it was sent.
//
// The map lives in the kernel, not in keter: it outlives a keter restart,
// as the apps do. Only connections made by keter's nginx are redirected:
// the rule matches the cgroup nginx runs in, which is resolved when the
// rule is loaded, so the rule is made again at every start of nginx (Bind,
// and StartHook, which nginx's unit runs itself). Each app unit's
// StopHook takes its element out once the unit is stopped for good.
package portmap

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"sync"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"

	"github.com/keter-systemd/keter/internal/cgroup"
)

// DefaultTable is the nftables table keter owns (family ip).
const DefaultTable = "keter"

// Map is one nftables table holding the front → version port map.
type Map struct {
	table string
	nft   string

	mu   sync.Mutex
	conn *nftables.Conn
	gen  *netlink.Conn // for Generation
}

// New names the table; nothing is touched until Setup.
func New(table string) *Map {
	if table == "" {
		table = DefaultTable
	}
	nft := "/usr/sbin/nft" // the Debian path, when PATH lacks sbin
	if p, err := exec.LookPath("nft"); err == nil {
		nft = p
	}
	return &Map{table: table, nft: nft}
}

// Table is the nftables table's name.
func (m *Map) Table() string { return m.table }

// Setup creates the table, its map and its chain, keeping the map's
// elements and the chain's rule when they exist already (keter restarted
// while its apps kept serving). It fails when nftables can't be used here.
// Nothing is redirected until Bind names nginx's cgroup.
func (m *Map) Setup(ctx context.Context) error {
	if err := m.run(ctx, strings.Join(skeleton(m.table), "\n")); err != nil {
		return fmt.Errorf("setting up nftables table %s: %w", m.table, err)
	}
	return nil
}

// Bind makes the map redirect only connections from sockets of cgroup
// (a cgroup v2 path such as /system.slice/nginx.service) and its
// children, replacing the rule in one transaction.
func (m *Map) Bind(ctx context.Context, cgroup string) error {
	path, level, err := cgroupMatch(cgroup)
	if err != nil {
		return fmt.Errorf("binding nftables table %s to nginx: %w", m.table, err)
	}
	script := append(skeleton(m.table), ruleLines(m.table, strconv.Quote(path), strconv.Itoa(level))...)
	if err := m.run(ctx, strings.Join(script, "\n")); err != nil {
		return fmt.Errorf("binding nftables table %s to cgroup %s: %w", m.table, cgroup, err)
	}
	return nil
}

// BindProcess is Bind to the cgroup process pid runs in.
func (m *Map) BindProcess(ctx context.Context, pid int) error {
	cg, err := cgroup.Of(pid)
	if err != nil {
		return fmt.Errorf("binding nftables table %s to process %d: %w", m.table, pid, err)
	}
	return m.Bind(ctx, cg)
}

// StartHook is the start hook (see the function of that name) for this
// map's table, with the scripts in the folder hooks.
func (m *Map) StartHook(hooks string) []string { return StartHook(hooks, m.table) }

// skeleton creates what is missing and leaves what exists.
func skeleton(table string) []string {
	t := "ip " + table
	return []string{
		"add table " + t,
		"add map " + t + " fronts { type inet_service : inet_service; }",
		"add chain " + t + " output { type nat hook output priority -100; policy accept; }",
	}
}

// ruleLines replaces the chain's rule; path and level are nft tokens
// (quoted literals, or shell variables in StartHook). One transaction:
// the chain is never without its rule.
func ruleLines(table, path, level string) []string {
	t := "ip " + table
	return []string{
		"flush chain " + t + " output",
		"add rule " + t + " output socket cgroupv2 level " + level + " " + path +
			" ip daddr 127.0.0.1 tcp dport @fronts dnat ip to 127.0.0.1 : tcp dport map @fronts",
	}
}

// Apply makes the map exactly want (front port → version port), in one
// netlink transaction: a connection made at any moment meets either the
// old map or the new one. It goes over netlink from keter itself, not
// through nft: starting nft costs 10-40 ms, on every deploy's path.
func (m *Map) Apply(ctx context.Context, want map[int]int) error {
	elems := make([]nftables.SetElement, 0, len(want))
	for f, p := range want {
		if !validPort(f) || !validPort(p) {
			return fmt.Errorf("port map: %d → %d is not a pair of ports", f, p)
		}
		elems = append(elems, nftables.SetElement{Key: port16(f), Val: port16(p)})
	}
	err := m.netlink(func(c *nftables.Conn, set *nftables.Set) error {
		c.FlushSet(set)
		if len(elems) > 0 {
			if err := c.SetAddElements(set, elems); err != nil {
				return err
			}
		}
		return c.Flush()
	})
	if err != nil {
		return fmt.Errorf("updating nftables map %s fronts: %w", m.table, err)
	}
	return nil
}

// Current reads the map back from the kernel.
func (m *Map) Current(ctx context.Context) (map[int]int, error) {
	got := map[int]int{}
	err := m.netlink(func(c *nftables.Conn, set *nftables.Set) error {
		elems, err := c.GetSetElements(set)
		if err != nil {
			return err
		}
		for _, e := range elems {
			if len(e.Key) < 2 || len(e.Val) < 2 {
				return fmt.Errorf("element %x : %x is not a pair of ports", e.Key, e.Val)
			}
			got[int(binary.BigEndian.Uint16(e.Key))] = int(binary.BigEndian.Uint16(e.Val))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading nftables map %s fronts: %w", m.table, err)
	}
	return got, nil
}

// netlink runs f on a netlink connection and the map, one at a time.
func (m *Map) netlink(f func(*nftables.Conn, *nftables.Set) error) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.conn == nil {
		c, err := nftables.New()
		if err != nil {
			return err
		}
		m.conn = c
	}
	set, err := m.conn.GetSetByName(&nftables.Table{Name: m.table, Family: nftables.TableFamilyIPv4}, "fronts")
	if err != nil {
		return fmt.Errorf("%w (was the table set up?)", err)
	}
	return f(m.conn, set)
}

// port16 is a port as nftables keys inet_service: 2 bytes, big-endian.
func port16(p int) []byte {
	b := make([]byte, 2)
	binary.BigEndian.PutUint16(b, uint16(p))
	return b
}

// Remove deletes the table; a table already gone is not an error.
func (m *Map) Remove(ctx context.Context) error {
	// Add first: nft before 1.0.8 has no "destroy" that ignores a
	// missing table.
	if err := m.run(ctx, "add table ip "+m.table+"\ndelete table ip "+m.table); err != nil {
		return fmt.Errorf("removing nftables table %s: %w", m.table, err)
	}
	return nil
}

func (m *Map) run(ctx context.Context, script string) error {
	cmd := exec.CommandContext(ctx, m.nft, "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	out, err := cmd.CombinedOutput()
	if err != nil {
		var ee *exec.ExitError
		if msg := strings.TrimSpace(string(out)); msg != "" && errors.As(err, &ee) {
			return errors.New(msg)
		}
		return err
	}
	return nil
}

func validPort(p int) bool { return p > 0 && p < 1<<16 }
