package main

import (
	"context"
	"fmt"
	"strconv"
	"time"
)

// instancesResult: a single-threaded app that spends about 2 ms of CPU on
// each request, run as one and as two instances, alternating round by
// round under the same wrk load through keter's nginx.
type instancesResult struct {
	One, Two []wrkResult
}

// Gain is the median of two instances' req/s over one's, round by round.
func (r instancesResult) Gain() float64 { return medianF(ratios(r.Two, r.One)) }

func benchInstances(ctx context.Context, e env) (res instancesResult, err error) {
	k, err := startKeter(ctx, e.keterBin, e.base, "instances")
	if err != nil {
		return res, err
	}
	defer k.stop(ctx)
	if err := k.waitReady(ctx); err != nil {
		return res, err
	}
	host := "instances.bench.test"
	deployed := 0
	deploy := func(n int) error {
		deployed++
		msg := fmt.Sprintf("n%d-%d", n, deployed)
		// GOMAXPROCS=1: a single-threaded app, as one Python, Node.js or
		// Ruby process is; --cpu: the work it does per request.
		yaml := fmt.Sprintf("stanzas:\n  - type: webapp\n    exec: ../bin/app\n    host: %s\n    instances: %d\n"+
			"    env: {GOMAXPROCS: \"1\"}\n    args: [\"--message\", %s, \"--cpu\", \"2ms\"]\n", host, n, strconv.Quote(msg))
		b, err := makeBundleYAML(e.app, yaml)
		if err != nil {
			return err
		}
		if err := stage(k.incoming(), "instances", b); err != nil {
			return err
		}
		if _, err := publish(k.incoming(), "instances"); err != nil {
			return err
		}
		if _, err := waitBody(ctx, k.port, host, msg, 5*time.Millisecond, 60*time.Second); err != nil {
			return err
		}
		// The old version drained and stopped: it must not share the CPU.
		_, err = k.waitLog(ctx, "old version stopped", deployed-1, 30*time.Second)
		return err
	}
	for round := 0; round < min(5, max(3, e.throughputRounds)); round++ {
		for _, x := range []struct {
			n    int
			into *[]wrkResult
		}{{1, &res.One}, {2, &res.Two}} {
			if err := deploy(x.n); err != nil {
				return res, err
			}
			w, err := runWrk(ctx, 32, e.wrkDur/2, host, fmt.Sprintf("http://127.0.0.1:%d/", k.port), false)
			if err != nil {
				return res, err
			}
			*x.into = append(*x.into, w)
		}
		i := len(res.One) - 1
		e.logf("  round %d: instances: 1 %.0f req/s, instances: 2 %.0f req/s (%.2fx)", round+1, res.One[i].RPS(), res.Two[i].RPS(), res.Two[i].RPS()/res.One[i].RPS())
	}
	return res, nil
}
