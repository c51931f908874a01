// Command app is the minimal web app keter's benchmarks deploy: it answers
// every request on 127.0.0.1:$PORT with the text given by --message, and
// does nothing else, so the figures measure keter and nginx, not the app.
package main

import (
	"flag"
	"log"
	"net/http"
	"os"
)

func main() {
	msg := flag.String("message", "hello", "body of every response")
	flag.Parse()
	port := os.Getenv("PORT")
	if port == "" {
		log.Fatal("app: PORT is not set")
	}
	body := []byte(*msg)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Write(body)
	})
	log.Fatal(http.ListenAndServe("127.0.0.1:"+port, h))
}
