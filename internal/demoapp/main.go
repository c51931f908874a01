// Command demoapp is the tiny web app that keter's tests, demo and
// benchmarks deploy: it serves HTTP on $PORT and can be told to misbehave.
package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/keter-systemd/keter/internal/sdlisten"
)

func main() {
	msg := flag.String("message", "hello from keter demo", "body of GET /")
	exit := flag.Int("exit", -1, "exit at once with this code instead of serving")
	neverReady := flag.Bool("never-ready", false, "run but never listen")
	delay := flag.Duration("start-delay", 0, "wait this long before listening")
	downFile := flag.String("down-file", "", "while this file exists, fail at start (after --down-delay), as an app does whose database is down")
	downDelay := flag.Duration("down-delay", 0, "how long a start takes to fail while --down-file exists")
	flag.Parse()

	fmt.Printf("demoapp starting: message=%q pid=%d\n", *msg, os.Getpid())
	if *exit >= 0 {
		fmt.Printf("demoapp exiting with %d as asked\n", *exit)
		os.Exit(*exit)
	}
	if *downFile != "" {
		if _, err := os.Stat(*downFile); err == nil {
			time.Sleep(*downDelay)
			fmt.Printf("demoapp: %s is there, what it needs is down: exiting\n", *downFile)
			os.Exit(1)
		}
	}
	if *neverReady {
		// A bare select{} would be reported as a deadlock and exit.
		for {
			time.Sleep(time.Hour)
		}
	}
	time.Sleep(*delay)
	port := os.Getenv("PORT")
	l, inherited, err := sdlisten.Listen(port)
	if err != nil {
		log.Fatal("demoapp: ", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, *msg)
	})
	mux.HandleFunc("/env/{name}", func(w http.ResponseWriter, r *http.Request) {
		v, ok := os.LookupEnv(r.PathValue("name"))
		if !ok {
			http.NotFound(w, r)
			return
		}
		fmt.Fprint(w, v)
	})
	mux.HandleFunc("/pid", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, os.Getpid())
	})
	mux.HandleFunc("/host", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, r.Host)
	})
	mux.HandleFunc("/sleep", func(w http.ResponseWriter, r *http.Request) {
		ms, _ := strconv.Atoi(r.URL.Query().Get("ms"))
		time.Sleep(time.Duration(ms) * time.Millisecond)
		fmt.Fprintln(w, *msg)
	})
	mux.HandleFunc("/alloc", func(w http.ResponseWriter, r *http.Request) {
		// Holds MB more mebibytes, every page touched, for usage tests.
		mb, _ := strconv.Atoi(r.URL.Query().Get("mb"))
		b := make([]byte, mb<<20)
		for i := 0; i < len(b); i += 4096 {
			b[i] = 1
		}
		mu.Lock()
		held = append(held, b)
		mu.Unlock()
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/burn", func(w http.ResponseWriter, r *http.Request) {
		// Spends at least MS milliseconds of CPU time and answers the
		// process's CPU time in nanoseconds.
		ms, _ := strconv.Atoi(r.URL.Query().Get("ms"))
		start, err := cpuTime()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		x, now := 0, start
		for now < start+time.Duration(ms)*time.Millisecond {
			for i := 0; i < 100000; i++ {
				x += i
			}
			now, _ = cpuTime()
		}
		mu.Lock()
		sink += x
		mu.Unlock()
		fmt.Fprint(w, int64(now))
	})
	mux.HandleFunc("/write", func(w http.ResponseWriter, r *http.Request) {
		// Lets tests check which folders the sandbox leaves writable.
		err := os.WriteFile(r.URL.Query().Get("path"), []byte("x"), 0o600)
		if err != nil {
			http.Error(w, err.Error(), http.StatusForbidden)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/read", func(w http.ResponseWriter, r *http.Request) {
		// Lets tests check what the sandbox lets an app read.
		b, err := os.ReadFile(r.URL.Query().Get("path"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusForbidden)
			return
		}
		w.Write(b)
	})
	mux.HandleFunc("/fetch", func(w http.ResponseWriter, r *http.Request) {
		// Lets tests check what the sandbox lets an app reach.
		resp, err := http.Get(r.URL.Query().Get("url"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		fmt.Fprintf(w, "%d ", resp.StatusCode)
		io.Copy(w, resp.Body)
	})
	mux.HandleFunc("/inherited", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, inherited) // whether systemd passed the socket
	})
	fmt.Printf("demoapp listening on port %s (socket from systemd: %t)\n", port, inherited)
	log.Fatal(http.Serve(l, mux))
}

var (
	mu   sync.Mutex
	held [][]byte // what /alloc allocated
	sink int      // keeps /burn's loop from being optimised away
)

// cpuTime is the process's user plus system CPU time.
func cpuTime() (time.Duration, error) {
	var ru syscall.Rusage
	err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), err
}
