package app

import (
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/keter-systemd/keter/config"
	"github.com/keter-systemd/keter/internal/atomicfile"
)

// reservedPortsFile keeps ports out of the kernel's ephemeral allocation.
const reservedPortsFile = "/proc/sys/net/ipv4/ip_local_reserved_ports"

// reservePorts adds keter's port ranges to the kernel's reserved ports.
// Keter's ranges lie mostly inside Linux's ephemeral range (32768-60999):
// without this, an outgoing connection (nginx to an upstream, an app to
// its database) can take a port between keter's check and the app's bind,
// and the app fails with "address already in use". Explicit binds, as
// apps do, still work on reserved ports.
//
// record keeps the ports keter added (not those reserved before it), in
// the kernel's syntax: purging the package takes exactly those out again.
func reservePorts(path, record string, ranges []config.PortRange) (string, error) {
	cur, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("reading %s: %w", path, err)
	}
	have := strings.TrimSpace(string(cur))
	merged, err := mergeRanges(have, ranges)
	if err != nil {
		return "", fmt.Errorf("reading %s: %w", path, err)
	}
	if merged == have {
		return merged, nil
	}
	var ours string
	if b, err := os.ReadFile(record); err == nil {
		ours = strings.TrimSpace(string(b))
	}
	added, err := subtractRanges(merged, have)
	if err != nil {
		return "", err
	}
	if ours, err = mergeRanges(ours, added); err != nil {
		return "", fmt.Errorf("reading %s: %w", record, err)
	}
	// The record first: were keter to die in between, purge would only
	// take out ports keter meant to add.
	if err := atomicfile.Write(record, []byte(ours+"\n"), 0o644); err != nil {
		return "", fmt.Errorf("recording reserved ports: %w", err)
	}
	if err := os.WriteFile(path, []byte(merged+"\n"), 0o644); err != nil {
		return "", fmt.Errorf("writing %s: %w", path, err)
	}
	return merged, nil
}

// subtractRanges is the ports of list a not in list b, as ranges.
func subtractRanges(a, b string) ([]config.PortRange, error) {
	ra, err := parseRanges(a)
	if err != nil {
		return nil, err
	}
	rb, err := parseRanges(b)
	if err != nil {
		return nil, err
	}
	var in [1 << 16]bool
	for _, r := range ra {
		for p := r.From; p <= r.To; p++ {
			in[p] = true
		}
	}
	for _, r := range rb {
		for p := r.From; p <= r.To; p++ {
			in[p] = false
		}
	}
	var out []config.PortRange
	for p := 0; p < len(in); p++ {
		if !in[p] {
			continue
		}
		from := p
		for p+1 < len(in) && in[p+1] {
			p++
		}
		out = append(out, config.PortRange{From: from, To: p})
	}
	return out, nil
}

// mergeRanges adds ranges to a kernel list like "8080,43124-44320" and
// returns the union, sorted and coalesced, in the same syntax.
func mergeRanges(cur string, ranges []config.PortRange) (string, error) {
	have, err := parseRanges(cur)
	if err != nil {
		return "", err
	}
	all := append(append([]config.PortRange(nil), ranges...), have...)
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

// parseRanges reads a kernel port list like "8080,43124-44320".
func parseRanges(list string) ([]config.PortRange, error) {
	var out []config.PortRange
	for _, part := range strings.Split(list, ",") {
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
		if err1 != nil || err2 != nil || f > t || f < 0 || t > 65535 {
			return nil, fmt.Errorf("unexpected entry %q", part)
		}
		out = append(out, config.PortRange{From: f, To: t})
	}
	return out, nil
}
