package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

// execSignals is how keter exec treats its signals, as a terminal would
// its foreground command: the first Ctrl-C (SIGINT) and each Ctrl-\
// (SIGQUIT) go to the command, which decides (a shell's trap, a REPL's
// cancel) and whose exit status passes through; a second Ctrl-C, SIGTERM
// or SIGHUP (the terminal closed) stops it. The returned context ends at
// a stop; done releases the signals.
func execSignals(parent context.Context) (context.Context, <-chan syscall.Signal, func()) {
	// The CLI's context ends at the first SIGINT: keter exec decides itself.
	ctx, stop := context.WithCancel(context.WithoutCancel(parent))
	in := make(chan os.Signal, 4)
	signal.Notify(in, os.Interrupt, syscall.SIGQUIT, syscall.SIGTERM, syscall.SIGHUP)
	out := make(chan syscall.Signal, 4)
	quit := make(chan struct{})
	go func() {
		interrupted := false
		for {
			select {
			case <-quit:
				return
			case s := <-in:
				switch {
				case s == syscall.SIGQUIT, s == os.Interrupt && !interrupted:
					interrupted = interrupted || s == os.Interrupt
					select {
					case out <- s.(syscall.Signal):
					default:
					}
				default:
					stop()
				}
			}
		}
	}()
	return ctx, out, func() {
		signal.Stop(in)
		close(quit)
		stop()
	}
}
