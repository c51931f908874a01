// Package portmap switches app versions without an nginx reload. nginx
// proxies each webapp to a stable front port that nothing listens on; an
// nftables DNAT map in the kernel sends new connections to that port on to
// the live version's own port. Changing one map element is atomic, and
// connections already open keep going where they went, so the old version
// finishes what it was sent.
//
// The map lives in the kernel, not in keter: it outlives a keter restart,
// as the apps do.
package portmap

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"sort"
	"strconv"
	"strings"
)

// DefaultTable is the nftables table keter owns (family ip).
const DefaultTable = "keter"

// Map is one nftables table holding the front → version port map.
type Map struct {
	table string
	nft   string
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

// Setup creates the table, its map and its one rule, keeping the map's
// elements when the table exists already (keter restarted while its apps
// kept serving). It fails when nftables can't be used here.
func (m *Map) Setup(ctx context.Context) error {
	t := "ip " + m.table
	script := strings.Join([]string{
		"add table " + t,
		"add map " + t + " fronts { type inet_service : inet_service; }",
		"add chain " + t + " output { type nat hook output priority -100; policy accept; }",
		// One transaction: the chain is never without its rule.
		"flush chain " + t + " output",
		"add rule " + t + " output ip daddr 127.0.0.1 tcp dport @fronts dnat ip to 127.0.0.1 : tcp dport map @fronts",
	}, "\n")
	if err := m.run(ctx, script); err != nil {
		return fmt.Errorf("setting up nftables table %s: %w", m.table, err)
	}
	return nil
}

// Apply makes the map exactly want (front port → version port), in one
// transaction: a connection made at any moment meets either the old map
// or the new one.
func (m *Map) Apply(ctx context.Context, want map[int]int) error {
	var b strings.Builder
	fmt.Fprintf(&b, "flush map ip %s fronts\n", m.table)
	if len(want) > 0 {
		fronts := make([]int, 0, len(want))
		for f := range want {
			fronts = append(fronts, f)
		}
		sort.Ints(fronts)
		elems := make([]string, len(fronts))
		for i, f := range fronts {
			if !validPort(f) || !validPort(want[f]) {
				return fmt.Errorf("port map: %d → %d is not a pair of ports", f, want[f])
			}
			elems[i] = strconv.Itoa(f) + " : " + strconv.Itoa(want[f])
		}
		fmt.Fprintf(&b, "add element ip %s fronts { %s }\n", m.table, strings.Join(elems, ", "))
	}
	if err := m.run(ctx, b.String()); err != nil {
		return fmt.Errorf("updating nftables map %s fronts: %w", m.table, err)
	}
	return nil
}

// Current reads the map back from the kernel.
func (m *Map) Current(ctx context.Context) (map[int]int, error) {
	cmd := exec.CommandContext(ctx, m.nft, "-j", "list", "map", "ip", m.table, "fronts")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("reading nftables map %s fronts: %s: %w", m.table, strings.TrimSpace(stderr.String()), err)
	}
	var doc struct {
		Nftables []struct {
			Map *struct {
				Elem [][2]int `json:"elem"`
			} `json:"map"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		return nil, fmt.Errorf("reading nftables map %s fronts: %w", m.table, err)
	}
	got := map[int]int{}
	for _, o := range doc.Nftables {
		if o.Map != nil {
			for _, e := range o.Map.Elem {
				got[e[0]] = e[1]
			}
		}
	}
	return got, nil
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
