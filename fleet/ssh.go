package fleet

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"sync"
)

// sshOptions keep a rollout from hanging on a host that went away or
// from prompting on the terminal that several sessions share. They come
// before the operator's ~/.ssh/config, which still decides the rest.
var sshOptions = []string{
	"-T",
	"-o", "BatchMode=yes",
	"-o", "ConnectTimeout=15",
	"-o", "ServerAliveInterval=5",
	"-o", "ServerAliveCountMax=3",
}

// session is one `ssh DEST keter remote …` process.
type session struct {
	dest  string
	cmd   *exec.Cmd
	stdin io.WriteCloser
	msgs  chan Message
	done  chan struct{} // closed once ssh exited; err and stderr are set
	err   error
	tail  tail
}

// open starts ssh to dest running keter with args, each quoted for the
// remote shell.
func open(ctx context.Context, sshCmd, dest string, args ...string) (*session, error) {
	words := []string{"keter"}
	for _, a := range args {
		words = append(words, quote(a))
	}
	da, err := destArgs(dest)
	if err != nil {
		return nil, err
	}
	argv := append(append(append([]string{}, sshOptions...), da...), strings.Join(words, " "))
	cmd := exec.CommandContext(ctx, sshCmd, argv...)
	s := &session{dest: dest, cmd: cmd, msgs: make(chan Message, 4), done: make(chan struct{})}
	cmd.Stderr = &s.tail
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("running %s: %w", sshCmd, err)
	}
	s.stdin = stdin
	go func() {
		defer close(s.done)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64*1024), 16<<20)
		for sc.Scan() {
			line, ok := strings.CutPrefix(sc.Text(), Prefix)
			if !ok {
				continue
			}
			var m Message
			if json.Unmarshal([]byte(line), &m) == nil {
				s.msgs <- m
			}
		}
		io.Copy(io.Discard, stdout)
		s.err = cmd.Wait()
		close(s.msgs)
	}()
	return s, nil
}

// next is the host's next message; when ssh ended first, the error is
// ssh's (or the remote keter's) own last words.
func (s *session) next(ctx context.Context) (Message, error) {
	select {
	case m, ok := <-s.msgs:
		if ok {
			return m, nil
		}
		<-s.done
		return Message{}, s.failure()
	case <-ctx.Done():
		return Message{}, ctx.Err()
	}
}

func (s *session) failure() error {
	msg := strings.TrimSpace(s.tail.String())
	var ee *exec.ExitError
	switch {
	case msg != "":
		return errors.New(msg)
	case errors.As(s.err, &ee) && ee.ExitCode() == 255:
		return errors.New("ssh failed (exit status 255)")
	case s.err != nil:
		return fmt.Errorf("keter on the host ended: %v", s.err)
	}
	return errors.New("keter on the host ended without an answer")
}

// write sends a command line (and a body).
func (s *session) write(line string, body io.Reader) error {
	if _, err := io.WriteString(s.stdin, line+"\n"); err != nil {
		return fmt.Errorf("sending to %s: %w", s.dest, err)
	}
	if body != nil {
		if _, err := io.Copy(s.stdin, body); err != nil {
			return fmt.Errorf("sending the bundle to %s: %w", s.dest, err)
		}
	}
	return nil
}

// close ends the session (and so the host's lock) and waits for ssh.
func (s *session) close() {
	s.stdin.Close()
	for range s.msgs {
	}
	<-s.done
}

// tail keeps the last lines ssh wrote to stderr.
type tail struct {
	mu    sync.Mutex
	lines []string
	part  string
}

const tailLines = 20

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	all := t.part + string(p)
	lines := strings.Split(all, "\n")
	t.part = lines[len(lines)-1]
	for _, l := range lines[:len(lines)-1] {
		if l = strings.TrimRight(l, "\r"); l != "" {
			t.lines = append(t.lines, l)
		}
	}
	if len(t.lines) > tailLines {
		t.lines = t.lines[len(t.lines)-tailLines:]
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := strings.Join(t.lines, "\n")
	if t.part != "" {
		out += "\n" + t.part
	}
	return out
}
