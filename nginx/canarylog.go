package nginx

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/keter-systemd/keter/internal/atomicfile"
)

// Requests per version while a canary runs. Each webapp location logs
// one line per request, only while its stanza's canary "on" flag exists,
// to keter over a unix datagram socket (nginx's syslog client): the
// front port the request was last sent to. keter knows which version
// each front leads to. The cost is one sendto per request during a
// canary, none otherwise; a line nginx could not send (keter restarting)
// is not counted.

// canaryLogSocket is the socket's file name in Paths.CanaryDir; the file
// named after it with canaryLogOn exists while keter listens (a socket
// itself is no file for nginx's open file cache).
const (
	canaryLogSocket = "requests.sock"
	canaryLogOn     = ".on"
)

// canaryLog is where nginx sends the lines; "" when there are no canary
// groups.
func (r *renderer) canaryLog() string {
	if r.p.CanaryDir == "" {
		return ""
	}
	return filepath.Join(r.p.CanaryDir, canaryLogSocket)
}

// CountCanaryRequests listens on the socket the canary locations log to
// and calls count with each request's front port, until ctx ends. It
// returns at once when this nginx has no canary groups.
func (m *Manager) CountCanaryRequests(ctx context.Context, count func(front int)) error {
	if m.paths.CanaryDir == "" {
		return nil
	}
	if err := os.MkdirAll(m.paths.CanaryDir, 0o711); err != nil {
		return fmt.Errorf("creating the canary flag folder: %w", err)
	}
	path := filepath.Join(m.paths.CanaryDir, canaryLogSocket)
	os.Remove(path) // stale from the keter before
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("listening for canary request lines: %w", err)
	}
	defer conn.Close()
	defer os.Remove(path)
	if err := m.allowWorkers(path); err != nil {
		return err
	}
	// nginx logs to the socket only while this file exists (canaryPass).
	if err := atomicfile.Write(path+canaryLogOn, nil, 0o644); err != nil {
		return fmt.Errorf("marking the canary request socket: %w", err)
	}
	defer os.Remove(path + canaryLogOn)
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	buf := make([]byte, 2048)
	for {
		n, _, err := conn.ReadFromUnix(buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("reading canary request lines: %w", err)
		}
		if f := lastFront(string(buf[:n])); f != 0 {
			count(f)
		}
	}
}

// allowWorkers lets nginx's workers send to the socket: only their user
// in managed mode, anyone who can reach the folder otherwise (the
// system's nginx runs workers as a user keter does not know).
func (m *Manager) allowWorkers(path string) error {
	if m.managed() && m.paths.User != "" {
		if u, err := user.Lookup(m.paths.User); err == nil {
			uid, _ := strconv.Atoi(u.Uid)
			if err := os.Chown(path, uid, -1); err == nil {
				return os.Chmod(path, 0o600)
			}
		}
	}
	return os.Chmod(path, 0o666)
}

// lastFront is the port of the last loopback upstream address in a log
// line ("... 127.0.0.1:41020, 127.0.0.1:41000": the request was retried
// on the second); 0 when there is none.
func lastFront(line string) int {
	i := strings.LastIndex(line, "127.0.0.1:")
	if i < 0 {
		return 0
	}
	s := line[i+len("127.0.0.1:"):]
	end := 0
	for end < len(s) && s[end] >= '0' && s[end] <= '9' {
		end++
	}
	p, err := strconv.Atoi(s[:end])
	if err != nil || p < 1 || p > 65535 {
		return 0
	}
	return p
}
