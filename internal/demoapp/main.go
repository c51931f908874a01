// Command demoapp is the tiny web app that keter's tests, demo and
// benchmarks deploy: it serves HTTP on $PORT and can be told to misbehave.
package main

import (
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"strconv"
	"time"
)

func main() {
	msg := flag.String("message", "hello from keter demo", "body of GET /")
	exit := flag.Int("exit", -1, "exit at once with this code instead of serving")
	neverReady := flag.Bool("never-ready", false, "run but never listen")
	delay := flag.Duration("start-delay", 0, "wait this long before listening")
	flag.Parse()

	fmt.Printf("demoapp starting: message=%q pid=%d\n", *msg, os.Getpid())
	if *exit >= 0 {
		fmt.Printf("demoapp exiting with %d as asked\n", *exit)
		os.Exit(*exit)
	}
	if *neverReady {
		// A bare select{} would be reported as a deadlock and exit.
		for {
			time.Sleep(time.Hour)
		}
	}
	time.Sleep(*delay)
	port := os.Getenv("PORT")
	if port == "" {
		log.Fatal("demoapp: PORT is not set")
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
	fmt.Printf("demoapp listening on port %s\n", port)
	log.Fatal(http.ListenAndServe("127.0.0.1:"+port, mux))
}
