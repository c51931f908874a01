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
	From = 61000
	To   = 65499
)

var (
	mu   sync.Mutex
	gone = map[int]bool{} // handed out in this process
)

// Get returns a loopback port that was free a moment ago and that it has
// not returned before in this process: a config with two listeners on one
// port is refused, and two servers of one test must not race for it.
func Get() (int, error) {
	for range 10 * (To - From) {
		port := From + rand.IntN(To-From+1)
		mu.Lock()
		seen := gone[port]
		mu.Unlock()
		if seen {
			continue
		}
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			continue
		}
		l.Close()
		mu.Lock()
		gone[port] = true
		mu.Unlock()
		return port, nil
	}
	return 0, fmt.Errorf("no free loopback port in %d-%d", From, To)
}
