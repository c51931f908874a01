package app

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"

	"github.com/keter-systemd/keter/config"
)

// ErrNoPorts means every port of the configured ranges is busy or held.
var ErrNoPorts = errors.New("no free port left in port-manager ranges")

// ports hands out local ports for webapp stanzas. A port stays held until
// released, so a running version's port is never given out twice.
type ports struct {
	mu     sync.Mutex
	list   []int
	next   int
	held   map[int]bool
	probes func(port int) bool
}

func newPorts(ranges []config.PortRange) *ports {
	seen := map[int]bool{}
	var list []int
	for _, r := range ranges {
		for p := r.From; p <= r.To; p++ {
			if !seen[p] {
				seen[p] = true
				list = append(list, p)
			}
		}
	}
	return &ports{list: list, held: map[int]bool{}, probes: portFree}
}

// portFree probes by binding, as Keter does: something else may own it.
func portFree(port int) bool {
	for _, addr := range []string{"127.0.0.1:", "0.0.0.0:"} {
		l, err := net.Listen("tcp", addr+strconv.Itoa(port))
		if err != nil {
			return false
		}
		l.Close()
	}
	return true
}

// Take returns a free port and holds it. It walks the ranges round-robin,
// so a just-released port is reused last, which keeps a draining old
// version's port out of a new version's hands.
func (p *ports) Take() (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for range p.list {
		port := p.list[p.next]
		p.next = (p.next + 1) % len(p.list)
		if p.held[port] || !p.probes(port) {
			continue
		}
		p.held[port] = true
		return port, nil
	}
	return 0, fmt.Errorf("taking a port: %w", ErrNoPorts)
}

// plenty reports whether more than three quarters of the ports are free
// to take: spare fronts are taken only then, so that they never crowd out
// the ports later apps need (two each).
func (p *ports) plenty() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.held)*4 < len(p.list)
}

// Hold marks a port as used by an adopted version.
func (p *ports) Hold(port int) {
	p.mu.Lock()
	p.held[port] = true
	p.mu.Unlock()
}

// Release gives ports back.
func (p *ports) Release(ps ...int) {
	p.mu.Lock()
	for _, port := range ps {
		delete(p.held, port)
	}
	p.mu.Unlock()
}
