// Package freeport hands tests and benchmarks loopback ports to configure
// listeners on before the program that binds them starts.
package freeport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
)

// The range ports come from: above the kernel's ephemeral range
// (32768-60999 by default), never in it. Between our check and the bind
// that needs the port, any process on the host (another test run shares
// the network) may be given a port of that range for a listener or an
// outgoing connection, and once a status page's port was (bind: address
// already in use).
const (
	from = 61000
	to   = 65499
)

var (
	mu   sync.Mutex
	gone = map[int]bool{} // handed out in this process
)

// Get returns a loopback port that was free a moment ago and that it has
// not returned before in this process: a config with two listeners on one
// port is refused, and two servers of one test must not race for it.
func Get() (int, error) {
	// Held throughout: two callers checking one port in turn would both
	// find it free.
	mu.Lock()
	defer mu.Unlock()
	for range 10 * (to - from) {
		port := from + rand.IntN(to-from+1)
		if gone[port] {
			continue
		}
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			continue
		}
		l.Close()
		gone[port] = true
		return port, nil
	}
	return 0, fmt.Errorf("no free loopback port in %d-%d", from, to)
}
