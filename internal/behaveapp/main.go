// Command behaveapp is the web app keter's zero-downtime tests deploy: it
// serves HTTP on $PORT and answers in every shape a real app does (one
// write, headers then body, a chunked stream, server-sent events, a large
// download, a long poll, a WebSocket), each answer marked with --version so
// a client can tell which version answered and check it to the last byte.
// internal/loadgen is its client. On SIGTERM it shuts down gracefully:
// answers under way finish, each WebSocket gets a close frame (1001).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/keter-systemd/keter/internal/sdlisten"
)

func main() {
	version := flag.String("version", "v0", "the version every answer carries (header X-Version)")
	chatty := flag.Bool("chatty", false, "log each request to stdout")
	grace := flag.Duration("shutdown-timeout", 5*time.Second, "how long answers under way may take to finish after SIGTERM")
	delay := flag.Duration("start-delay", 0, "wait this long before listening (or serving the socket systemd passed), as a slow-starting app does")
	downFile := flag.String("down-file", "", "while this file exists, exit at start after 200 ms without listening (a crash loop)")
	flag.Parse()
	time.Sleep(*delay)
	log.SetOutput(os.Stdout)
	log.SetFlags(0)
	if _, err := os.Stat(*downFile); *downFile != "" && err == nil {
		time.Sleep(200 * time.Millisecond)
		log.Fatalf("behaveapp: %s is there: exiting", *downFile)
	}
	if err := run(*version, *chatty, *grace); err != nil {
		log.Fatalf("behaveapp: %v", err)
	}
}

func run(version string, chatty bool, grace time.Duration) error {
	port := os.Getenv("PORT")
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	// The socket systemd passes when socket-activated, else PORT.
	ln, inherited, err := sdlisten.Listen(port)
	if err != nil {
		return fmt.Errorf("listening: %w", err)
	}
	a := newApp(version, chatty)
	srv := &http.Server{Handler: a.routes(), ReadHeaderTimeout: 10 * time.Second}
	srv.RegisterOnShutdown(a.sockets.goingAway)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	fmt.Printf("behaveapp %s listening on port %s pid %d (socket from systemd: %t)\n", version, port, os.Getpid(), inherited)

	select {
	case err := <-served:
		return fmt.Errorf("serving: %w", err)
	case <-ctx.Done():
	}
	fmt.Printf("behaveapp %s shutting down\n", version)
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	err = srv.Shutdown(sctx) // closes the listener, waits for answers under way
	if werr := a.sockets.wait(sctx); werr != nil {
		err = errors.Join(err, fmt.Errorf("waiting for WebSockets to close: %w", werr))
	}
	if err != nil {
		return fmt.Errorf("shutting down: %w", err)
	}
	fmt.Printf("behaveapp %s stopped\n", version)
	return nil
}
