package main

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"log"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// The wire contract with internal/loadgen.
const (
	headerVersion    = "X-Version"     // on every answer
	headerBodyLength = "X-Body-Length" // the request body's length, read fully
	headerBodySHA256 = "X-Body-Sha256" // its sha256, hex
	headerSHA256     = "X-Sha256"      // /download's body's sha256, hex

	streamLines   = 30
	streamEvery   = 100 * time.Millisecond
	splitPause    = 20 * time.Millisecond
	pollWait      = 3 * time.Second
	downloadSize  = 20 << 20
	downloadChunk = 64 << 10
)

type app struct {
	version string
	chatty  bool
	sockets *sockets
	// download is /download's body's sha256, computed on first use.
	download func() string
}

func newApp(version string, chatty bool) *app {
	return &app{
		version: version,
		chatty:  chatty,
		sockets: newSockets(version),
		download: sync.OnceValue(func() string {
			h := sha256.New()
			writeDownload(h)
			return hex.EncodeToString(h.Sum(nil))
		}),
	}
}

func (a *app) routes() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/{$}", a.echo(a.root))
	mux.HandleFunc("/one", a.echo(a.one))
	mux.HandleFunc("/split", a.echo(a.split))
	mux.HandleFunc("/stream", a.echo(a.stream))
	mux.HandleFunc("/sse", a.echo(a.sse))
	mux.HandleFunc("/download", a.echo(a.serveDownload))
	mux.HandleFunc("/poll", a.echo(a.poll))
	mux.HandleFunc("/ws", a.logged(a.sockets.serve))
	return mux
}

// received is what echo read of a request's body.
type received struct {
	n      int64
	sha256 string
}

// line is the body of the answers that fit in one line: the endpoint, the
// version and the request body's length and sha256.
func (a *app) line(name string, in received) string {
	return fmt.Sprintf("%s %s %d %s\n", name, a.version, in.n, in.sha256)
}

func (a *app) logged(h http.HandlerFunc) http.HandlerFunc {
	if !a.chatty {
		return h
	}
	return func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		h(w, r)
		log.Printf("%s %s %s host=%s took=%s", a.version, r.Method, r.URL.Path, r.Host, time.Since(start))
	}
}

// echo reads the request body fully (GET's is empty) and marks the answer
// with the version and the body's length and sha256, so that a client can
// tell a truncated request body from a whole one.
func (a *app) echo(h func(http.ResponseWriter, *http.Request, received)) http.HandlerFunc {
	return a.logged(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodPost && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD, POST")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		sum := sha256.New()
		n, err := io.Copy(sum, r.Body)
		if err != nil {
			http.Error(w, "reading the request body: "+err.Error(), http.StatusBadRequest)
			return
		}
		in := received{n: n, sha256: hex.EncodeToString(sum.Sum(nil))}
		hd := w.Header()
		hd.Set(headerVersion, a.version)
		hd.Set(headerBodyLength, strconv.FormatInt(in.n, 10))
		hd.Set(headerBodySHA256, in.sha256)
		h(w, r, in)
	})
}

func (a *app) root(w http.ResponseWriter, r *http.Request, in received) {
	a.whole(w, a.line("behaveapp", in))
}

// one answers in one write.
func (a *app) one(w http.ResponseWriter, r *http.Request, in received) {
	a.whole(w, a.line("one", in))
}

func (a *app) whole(w http.ResponseWriter, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	io.WriteString(w, body)
}

// split sends its headers, waits, then sends its body: two writes on the
// wire, with a Content-Length that tells a client a body was cut short.
func (a *app) split(w http.ResponseWriter, r *http.Request, in received) {
	body := a.line("split", in)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	if err := http.NewResponseController(w).Flush(); err != nil {
		return
	}
	time.Sleep(splitPause)
	io.WriteString(w, body)
}

// stream sends a chunked answer for three seconds: numbered lines
// "VERSION I", one every 100 ms, each flushed, then "end 30".
func (a *app) stream(w http.ResponseWriter, r *http.Request, in received) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Accel-Buffering", "no")
	a.tick(w, r, func(i int) string { return fmt.Sprintf("%s %d\n", a.version, i) },
		fmt.Sprintf("end %d\n", streamLines))
}

// sse sends server-sent events for three seconds, "tick" events with data
// "VERSION I", then an "end" event.
func (a *app) sse(w http.ResponseWriter, r *http.Request, in received) {
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("X-Accel-Buffering", "no")
	a.tick(w, r, func(i int) string { return fmt.Sprintf("id: %d\nevent: tick\ndata: %s %d\n\n", i, a.version, i) },
		fmt.Sprintf("event: end\ndata: %s %d\n\n", a.version, streamLines))
}

// tick writes and flushes line(1) to line(streamLines), one every
// streamEvery, then end, unless the client goes away.
func (a *app) tick(w http.ResponseWriter, r *http.Request, line func(int) string, end string) {
	rc := http.NewResponseController(w)
	w.WriteHeader(http.StatusOK)
	if rc.Flush() != nil {
		return
	}
	t := time.NewTicker(streamEvery)
	defer t.Stop()
	for i := 1; i <= streamLines; i++ {
		select {
		case <-r.Context().Done():
			return
		case <-t.C:
		}
		if _, err := io.WriteString(w, line(i)); err != nil {
			return
		}
		if i == streamLines {
			io.WriteString(w, end)
		}
		if rc.Flush() != nil {
			return
		}
	}
}

// serveDownload sends 20 MiB with a Content-Length and the body's sha256
// in X-Sha256, in writes of 64 KiB.
func (a *app) serveDownload(w http.ResponseWriter, r *http.Request, in received) {
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.Itoa(downloadSize))
	w.Header().Set(headerSHA256, a.download())
	if r.Method == http.MethodHead {
		return
	}
	writeDownload(w)
}

// writeDownload writes /download's body: chunks of 64 KiB, each a fixed
// pattern stamped with its index, so that a lost, repeated or reordered
// chunk changes the sha256.
func writeDownload(w io.Writer) error {
	chunk := make([]byte, downloadChunk)
	for j := range chunk {
		chunk[j] = byte(j % 251)
	}
	for i := range downloadSize / downloadChunk {
		binary.BigEndian.PutUint64(chunk, uint64(i))
		if _, err := w.Write(chunk); err != nil {
			return err
		}
	}
	return nil
}

// poll is a long poll: it answers after three seconds.
func (a *app) poll(w http.ResponseWriter, r *http.Request, in received) {
	select {
	case <-r.Context().Done():
		return
	case <-time.After(pollWait):
	}
	a.whole(w, a.line("poll", in))
}
