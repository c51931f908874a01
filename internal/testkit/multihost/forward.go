package multihost

import (
	"context"
	"fmt"
	"io"
	"net"
	"runtime"
	"sync"

	"golang.org/x/sys/unix"
)

// Own names this process's own network namespace in Forward.
const Own = ""

// inNS runs f on a thread that entered network namespace ns (Own: stays
// here). The thread is never given back to Go's scheduler, so no other
// goroutine ever runs in that namespace.
func inNS(ns string, f func() error) error {
	if ns == Own {
		return f()
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with this goroutine
		fd, err := unix.Open("/run/netns/"+ns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- fmt.Errorf("opening namespace %s: %w", ns, err)
			return
		}
		err = unix.Setns(fd, unix.CLONE_NEWNET)
		unix.Close(fd)
		if err != nil {
			errc <- fmt.Errorf("entering namespace %s: %w", ns, err)
			return
		}
		errc <- f()
	}()
	return <-errc
}

// Forward relays TCP: it listens on listen inside namespace from and
// connects each accepted connection to addr inside namespace to (each is
// Own, c.Ops or a host's NS). It lets the parts of a later scenario meet
// across namespaces without routes between them, e.g. Pebble on this
// process's loopback: each host reaches its ACME API at 127.0.0.1:PORT
// (Forward(h.NS, "127.0.0.1:PORT", Own, "127.0.0.1:PORT")), and its
// HTTP-01 validator reaches the load balancer (Forward(Own,
// "127.0.0.1:HTTPPORT", c.Ops, c.LB)). It stops at cleanup.
func (c *Cluster) Forward(from, listen, to, addr string) error {
	var ln net.Listener
	err := inNS(from, func() (err error) {
		ln, err = net.Listen("tcp", listen)
		return err
	})
	if err != nil {
		return fmt.Errorf("forwarding from %s %s: %w", from, listen, err)
	}
	var wg sync.WaitGroup
	c.t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer in.Close()
				var out net.Conn
				err := inNS(to, func() (err error) {
					var d net.Dialer
					out, err = d.DialContext(context.Background(), "tcp", addr)
					return err
				})
				if err != nil {
					return
				}
				defer out.Close()
				done := make(chan struct{}, 2)
				go func() { io.Copy(out, in); done <- struct{}{} }()
				go func() { io.Copy(in, out); done <- struct{}{} }()
				<-done
			}()
		}
	}()
	return nil
}
