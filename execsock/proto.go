package execsock

import (
	"context"
	"os"
)

// Request is what the caller asks to run.
type Request struct {
	App  string   `json:"app"`
	Argv []string `json:"argv"`
}

// Caller is who sent a request, as the kernel tells it (SO_PEERCRED).
type Caller struct {
	UID, GID uint32
	PID      int32
}

// Outcome is how a command ended: its exit status, or the signal that
// killed it, or stopped at the caller's request.
type Outcome struct {
	Status  int
	Signal  int
	Stopped bool
}

// ExitCode is the status a shell would report: the exit status, or 128
// plus the signal; 130 (as for Ctrl-C) when the caller stopped it.
func (o Outcome) ExitCode() int {
	switch {
	case o.Stopped:
		return 130
	case o.Signal > 0:
		return 128 + o.Signal
	}
	return o.Status
}

// Handler runs one request with the caller's three files as the
// command's stdin, stdout and stderr; it calls started once the command
// runs. ctx ends when the caller asks to stop or goes away; signals
// carries the signals the caller asks to send to the command (SIGINT for
// a Ctrl-C). The files are closed once the handler returns.
type Handler func(ctx context.Context, req Request, caller Caller, files [3]*os.File, started func(unit string), signals <-chan int) (Outcome, error)

// message is one line from the server.
type message struct {
	Started string `json:"started,omitempty"`
	Done    bool   `json:"done,omitempty"`
	Status  int    `json:"status,omitempty"`
	Signal  int    `json:"signal,omitempty"`
	Stopped bool   `json:"stopped,omitempty"`
	Error   string `json:"error,omitempty"`
}

// control is one line from the client after its request.
type control struct {
	Stop bool `json:"stop,omitempty"`
	// Signal asks to send this signal (SIGINT or SIGQUIT) to the command.
	Signal int `json:"signal,omitempty"`
}

// forwardable are the signals a caller may send to its command: what a
// terminal sends to its foreground processes (Ctrl-C, Ctrl-\).
var forwardable = map[int]bool{2: true, 3: true}

// maxRequest bounds the request line: about the kernel's ARG_MAX.
const maxRequest = 2 << 20
