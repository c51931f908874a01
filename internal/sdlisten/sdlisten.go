// Package sdlisten takes the listening socket systemd passes to a
// socket-activated service (LISTEN_FDS, sd_listen_fds(3)), or listens on
// 127.0.0.1:PORT itself: the test and bench apps serve either way.
package sdlisten

import (
	"fmt"
	"net"
	"os"
	"strconv"
)

// firstFD is SD_LISTEN_FDS_START.
const firstFD = 3

// Listen returns systemd's first passed socket when it passed one to this
// process, else a new listener on 127.0.0.1:port. inherited says which.
func Listen(port string) (l net.Listener, inherited bool, err error) {
	n, _ := strconv.Atoi(os.Getenv("LISTEN_FDS"))
	pid, _ := strconv.Atoi(os.Getenv("LISTEN_PID"))
	if n >= 1 && pid == os.Getpid() {
		os.Unsetenv("LISTEN_FDS")
		os.Unsetenv("LISTEN_PID")
		os.Unsetenv("LISTEN_FDNAMES")
		f := os.NewFile(firstFD, "systemd-socket")
		l, err := net.FileListener(f)
		f.Close()
		if err != nil {
			return nil, false, fmt.Errorf("taking the socket systemd passed: %w", err)
		}
		return l, true, nil
	}
	if port == "" {
		return nil, false, fmt.Errorf("PORT is not set and systemd passed no socket")
	}
	l, err = net.Listen("tcp", "127.0.0.1:"+port)
	return l, false, err
}
