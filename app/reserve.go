package app

import (
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/keter-systemd/keter/config"
)

// reservedPortsFile keeps ports out of the kernel's ephemeral allocation.
const reservedPortsFile = "/proc/sys/net/ipv4/ip_local_reserved_ports"

// reservePorts adds keter's port ranges to the kernel's reserved ports.
// Keter's ranges lie mostly inside Linux's ephemeral range (32768-60999):
// without this, an outgoing connection (nginx to an upstream, an app to
// its database) can take a port between keter's check and the app's bind,
// and the app fails with "address already in use". Explicit binds, as
// apps do, still work on reserved ports.
func reservePorts(path string, ranges []config.PortRange) (string, error) {
	cur, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("reading %s: %w", path, err)
	}
	merged, err := mergeRanges(strings.TrimSpace(string(cur)), ranges)
	if err != nil {
		return "", fmt.Errorf("reading %s: %w", path, err)
	}
	if merged == strings.TrimSpace(string(cur)) {
		return merged, nil
	}
	if err := os.WriteFile(path, []byte(merged+"\n"), 0o644); err != nil {
		return "", fmt.Errorf("writing %s: %w", path, err)
	}
	return merged, nil
}

// mergeRanges adds ranges to a kernel list like "8080,43124-44320" and
// returns the union, sorted and coalesced, in the same syntax.
func mergeRanges(cur string, ranges []config.PortRange) (string, error) {
	all := append([]config.PortRange(nil), ranges...)
	for _, part := range strings.Split(cur, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		from, to, found := strings.Cut(part, "-")
		if !found {
			to = from
		}
		f, err1 := strconv.Atoi(from)
		t, err2 := strconv.Atoi(to)
		if err1 != nil || err2 != nil || f > t {
			return "", fmt.Errorf("unexpected entry %q", part)
		}
		all = append(all, config.PortRange{From: f, To: t})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].From < all[j].From })
	var out []config.PortRange
	for _, r := range all {
		if n := len(out); n > 0 && r.From <= out[n-1].To+1 {
			out[n-1].To = max(out[n-1].To, r.To)
			continue
		}
		out = append(out, r)
	}
	parts := make([]string, len(out))
	for i, r := range out {
		parts[i] = strconv.Itoa(r.From)
		if r.To != r.From {
			parts[i] += "-" + strconv.Itoa(r.To)
		}
	}
	return strings.Join(parts, ","), nil
}
