package execsock

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Server accepts exec requests on a unix socket.
type Server struct {
	l   *net.UnixListener
	gid int // the deploy group; 0: root only
	log *slog.Logger
	// inGroup reports whether a process is in the deploy group (its
	// supplementary groups); replaced in tests.
	inGroup func(pid int32, gid int) bool
}

// Listen creates the socket at path, 0600 for root, or 0660 for group gid
// when gid > 0. A stale socket from a crash is replaced.
func Listen(path string, gid int, log *slog.Logger) (*Server, error) {
	if log == nil {
		log = slog.Default()
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("creating exec socket: %w", err)
	}
	os.Remove(path) // stale; the CLI socket already proved no other keter runs here
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("creating exec socket: %w", err)
	}
	mode := os.FileMode(0o600)
	if gid > 0 {
		mode = 0o660
		if err := os.Chown(path, 0, gid); err != nil {
			l.Close()
			return nil, fmt.Errorf("giving the exec socket to the operators' group: %w", err)
		}
	}
	if err := os.Chmod(path, mode); err != nil {
		l.Close()
		return nil, fmt.Errorf("creating exec socket: %w", err)
	}
	return &Server{l: l, gid: gid, log: log, inGroup: procInGroup}, nil
}

// Serve runs h for each connection until ctx ends; then it closes the
// socket, which ends the running commands' contexts, and waits for them.
func (s *Server) Serve(ctx context.Context, h Handler) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		<-ctx.Done()
		s.l.Close()
	}()
	for {
		c, err := s.l.AcceptUnix()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("accepting on the exec socket: %w", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			s.serve(ctx, c, h)
		}()
	}
}

// serve handles one connection.
func (s *Server) serve(ctx context.Context, c *net.UnixConn, h Handler) {
	w := &writer{enc: json.NewEncoder(c)}
	caller, err := peer(c)
	if err != nil {
		w.send(message{Error: "keter cannot tell who is calling: " + err.Error()})
		return
	}
	if err := s.allowed(caller); err != nil {
		w.send(message{Error: err.Error()})
		return
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	req, files, rest, err := readRequest(c)
	for _, f := range files {
		if f != nil {
			defer f.Close()
		}
	}
	if err != nil {
		w.send(message{Error: err.Error()})
		return
	}
	c.SetReadDeadline(time.Time{})

	// The caller's stop, or its going away, ends the command.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	signals := make(chan int, 4)
	go func() {
		defer cancel()
		sc := bufio.NewScanner(rest)
		for sc.Scan() {
			var ctl control
			if json.Unmarshal(sc.Bytes(), &ctl) != nil {
				continue
			}
			if ctl.Stop {
				return
			}
			if forwardable[ctl.Signal] {
				select {
				case signals <- ctl.Signal:
				default: // a burst of Ctrl-C: one is enough
				}
			}
		}
	}()
	out, err := h(ctx, req, caller, files, func(unit string) { w.send(message{Started: unit}) }, signals)
	if err != nil {
		w.send(message{Error: err.Error()})
		return
	}
	w.send(message{Done: true, Status: out.Status, Signal: out.Signal, Stopped: out.Stopped})
}

// writer sends lines from the handler's goroutine and the server's.
type writer struct {
	mu  sync.Mutex
	enc *json.Encoder
}

func (w *writer) send(m message) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.enc.Encode(m) // a caller that went away reads nothing: fine
}

// allowed lets in root, and members of the deploy group.
func (s *Server) allowed(c Caller) error {
	if c.UID == 0 || s.gid > 0 && (int(c.GID) == s.gid || s.inGroup(c.PID, s.gid)) {
		return nil
	}
	return errors.New("only root and members of keter's deploy group may run commands in an app")
}

func peer(c *net.UnixConn) (Caller, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return Caller{}, err
	}
	var cred *unix.Ucred
	cerr := raw.Control(func(fd uintptr) {
		cred, err = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	})
	if cerr != nil {
		return Caller{}, cerr
	}
	if err != nil {
		return Caller{}, err
	}
	return Caller{UID: cred.Uid, GID: cred.Gid, PID: cred.Pid}, nil
}

// procInGroup reads the process's supplementary groups.
func procInGroup(pid int32, gid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(data), "\n") {
		if g, ok := strings.CutPrefix(line, "Groups:"); ok {
			return slices.Contains(strings.Fields(g), strconv.Itoa(gid))
		}
	}
	return false
}

// readRequest reads the request line and the three files sent with it;
// rest reads what the client sends after it.
func readRequest(c *net.UnixConn) (Request, [3]*os.File, io.Reader, error) {
	var files [3]*os.File
	buf := make([]byte, 64<<10)
	oob := make([]byte, unix.CmsgSpace(16*4))
	n, oobn, flags, _, err := c.ReadMsgUnix(buf, oob)
	if err != nil {
		return Request{}, files, nil, fmt.Errorf("reading the request: %w", err)
	}
	fds, ferr := parseRights(oob[:oobn])
	for i, fd := range fds {
		if i < 3 {
			files[i] = os.NewFile(uintptr(fd), "caller-"+strconv.Itoa(i))
		} else {
			unix.Close(fd)
		}
	}
	switch {
	case ferr != nil:
		return Request{}, files, nil, ferr
	case flags&unix.MSG_CTRUNC != 0 || len(fds) != 3:
		return Request{}, files, nil, fmt.Errorf("want 3 file descriptors (stdin, stdout, stderr) with the request, got %d", len(fds))
	}
	r := bufio.NewReaderSize(io.MultiReader(bytes.NewReader(buf[:n]), c), 64<<10)
	line, err := readLine(r)
	if err != nil {
		return Request{}, files, nil, err
	}
	var req Request
	if err := json.Unmarshal(line, &req); err != nil {
		return Request{}, files, nil, fmt.Errorf("reading the request: %w", err)
	}
	if len(req.Argv) == 0 || req.Argv[0] == "" {
		return Request{}, files, nil, errors.New("no command to run")
	}
	return req, files, r, nil
}

func readLine(r *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		part, more, err := r.ReadLine()
		if err != nil {
			return nil, fmt.Errorf("reading the request: %w", err)
		}
		line = append(line, part...)
		if len(line) > maxRequest {
			return nil, fmt.Errorf("request longer than %d bytes", maxRequest)
		}
		if !more {
			return line, nil
		}
	}
}

// parseRights returns every file descriptor in the control messages.
func parseRights(oob []byte) ([]int, error) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, fmt.Errorf("reading the file descriptors: %w", err)
	}
	var fds []int
	for _, m := range msgs {
		if m.Header.Level != unix.SOL_SOCKET || m.Header.Type != unix.SCM_RIGHTS {
			continue
		}
		got, err := unix.ParseUnixRights(&m)
		if err != nil {
			return fds, fmt.Errorf("reading the file descriptors: %w", err)
		}
		fds = append(fds, got...)
	}
	return fds, nil
}

// Close closes the socket.
func (s *Server) Close() error { return s.l.Close() }
