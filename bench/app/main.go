// Command app is the minimal web app keter's benchmarks deploy: it answers
// every request on 127.0.0.1:$PORT with the text given by --message, and
// does nothing else, so the figures measure keter and nginx, not the app.
// With --cpu it first spins that long, as an app doing real work does.
package main

import (
	"flag"
	"log"
	"net/http"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/keter-systemd/keter/internal/sdlisten"
)

func main() {
	msg := flag.String("message", "hello", "body of every response")
	cpu := flag.Duration("cpu", 0, "CPU time to spend on each request")
	flag.Parse()
	// The socket systemd passes when socket-activated, else PORT.
	l, _, err := sdlisten.Listen(os.Getenv("PORT"))
	if err != nil {
		log.Fatal("app: ", err)
	}
	body := []byte(*msg)
	work := 0
	if *cpu > 0 {
		work = calibrate(*cpu)
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sink += spin(work)
		w.Header().Set("Content-Type", "text/plain")
		w.Write(body)
	})
	log.Fatal(http.Serve(l, h))
}

// spin does n rounds of busy arithmetic.
func spin(n int) int {
	x := 1
	for i := 0; i < n; i++ {
		x ^= i * x
	}
	return x
}

// sink keeps spin from being optimised away.
var sink int

// calibrate finds how many rounds of spin take d of CPU, timed at start
// while nothing else runs in the app, on the process's CPU clock (which a
// busy machine does not slow down): each request then does the same work.
func calibrate(d time.Duration) int {
	n := 1 << 16
	for {
		start := cpuTime()
		sink += spin(n)
		if took := cpuTime() - start; took > 50*time.Millisecond {
			return int(float64(n) * float64(d) / float64(took))
		}
		n *= 2
	}
}

func cpuTime() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_PROCESS_CPUTIME_ID, &ts); err != nil {
		log.Fatal(err)
	}
	return time.Duration(ts.Nano())
}
