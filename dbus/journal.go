package dbus

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
)

// Journal returns the last n lines a unit logged (messages only, as
// `journalctl -u UNIT -n N -o cat`), oldest first.
func (c *Client) Journal(ctx context.Context, unit string, n int) ([]string, error) {
	cmd := exec.CommandContext(ctx, "journalctl", "-u", unit, "-n", strconv.Itoa(n), "-o", "cat", "--no-pager", "-q")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("reading journal of %s: %w: %s", unit, err, strings.TrimSpace(stderr.String()))
	}
	s := strings.TrimRight(string(out), "\n")
	if s == "" {
		return nil, nil
	}
	return strings.Split(s, "\n"), nil
}
