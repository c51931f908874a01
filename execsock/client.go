package execsock

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// ErrLost means the connection to keter ended before the command's end
// was known.
var ErrLost = errors.New("keter went away before the command ended")

// Run asks the server at path to run req with stdin, stdout and stderr as
// the command's own, and waits for its end. started, if set, is called
// once the command runs. When ctx ends, Run asks the server to stop the
// command and still waits for its end.
func Run(ctx context.Context, path string, req Request, stdin, stdout, stderr *os.File, started func(unit string)) (Outcome, error) {
	return RunSignals(ctx, path, req, stdin, stdout, stderr, started, nil)
}

// RunSignals is Run that also asks the server to send each signal from
// signals (SIGINT, SIGQUIT) to the command, as a terminal would.
func RunSignals(ctx context.Context, path string, req Request, stdin, stdout, stderr *os.File, started func(unit string), signals <-chan syscall.Signal) (Outcome, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return Outcome{}, fmt.Errorf("connecting to keter's exec socket: %w", err)
	}
	c := nc.(*net.UnixConn)
	defer c.Close()
	line, err := json.Marshal(req)
	if err != nil {
		return Outcome{}, err
	}
	rights := unix.UnixRights(int(stdin.Fd()), int(stdout.Fd()), int(stderr.Fd()))
	if _, _, err := c.WriteMsgUnix(append(line, '\n'), rights, nil); err != nil {
		return Outcome{}, fmt.Errorf("sending the request to keter: %w", err)
	}

	lines := make(chan message)
	readErr := make(chan error, 1)
	quit := make(chan struct{})
	defer close(quit)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(c)
		for sc.Scan() {
			var m message
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				readErr <- fmt.Errorf("reading keter's answer: %w", err)
				return
			}
			select {
			case lines <- m:
			case <-quit:
				return
			}
		}
		readErr <- sc.Err()
	}()
	done := ctx.Done()
	for {
		select {
		case <-done:
			done = nil
			// Ask once; the final line still comes.
			json.NewEncoder(c).Encode(control{Stop: true})
		case sig := <-signals:
			json.NewEncoder(c).Encode(control{Signal: int(sig)})
		case m, ok := <-lines:
			if !ok {
				if err := <-readErr; err != nil {
					return Outcome{}, fmt.Errorf("%w: %v", ErrLost, err)
				}
				return Outcome{}, ErrLost
			}
			switch {
			case m.Error != "":
				return Outcome{}, errors.New(m.Error)
			case m.Done:
				return Outcome{Status: m.Status, Signal: m.Signal, Stopped: m.Stopped}, nil
			case m.Started != "" && started != nil:
				started(m.Started)
			}
		}
	}
}
