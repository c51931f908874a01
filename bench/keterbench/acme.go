package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keter-systemd/keter/internal/freeport"
	"github.com/keter-systemd/keter/internal/pebble"
)

// acmeResult: new hosts deployed one by one behind an acme: true listener,
// with Pebble (validator sleep off) as the CA; then the cost of nginx
// reading the certificate file at each handshake.
type acmeResult struct {
	HTTP, HTTPS []time.Duration // rename → first plain 200; → first verified HTTPS 200
	Reloads     int             // nginx reloads while the hosts came up
	Hosts       int
	Dynamic     []handshakeRun // ssl_certificate from the ACME map (read per handshake)
	Static      []handshakeRun // the same certificate from a static ssl_certificate
	// The same with TLS session resumption (the listener's session: true).
	DynamicResumed, StaticResumed []handshakeRun
}

// handshakeRun is full TLS handshakes (no resumption) for a while.
type handshakeRun struct {
	Handshakes int
	Dur        time.Duration
	NginxCPU   time.Duration // nginx workers' utime+stime meanwhile
}

func (h handshakeRun) rate() float64 { return float64(h.Handshakes) / h.Dur.Seconds() }

// cpuPer is nginx's CPU per handshake over runs, in microseconds.
func cpuPer(runs []handshakeRun) float64 {
	var cpu time.Duration
	n := 0
	for _, r := range runs {
		cpu += r.NginxCPU
		n += r.Handshakes
	}
	return float64(cpu.Microseconds()) / float64(max(n, 1))
}

func benchACME(ctx context.Context, e env) (res acmeResult, err error) {
	port, err := freeport.Get()
	if err != nil {
		return res, err
	}
	tlsPort, err := freeport.Get()
	if err != nil {
		return res, err
	}
	ca, err := pebble.Start(ctx, pebble.Options{Dir: filepath.Join(e.base, "pebble"), HTTPPort: port})
	if err != nil {
		return res, err
	}
	defer ca.Stop()
	k, err := startKeterWith(ctx, e.keterBin, e.base, "acme", port,
		fmt.Sprintf("  - {host: 127.0.0.1, port: %d, acme: true, session: true}\n", tlsPort),
		fmt.Sprintf("acme:\n  email: bench@example.com\n  directory: %s\n  trusted-roots: %s\n", ca.DirectoryURL(), ca.APIRoot()))
	if err != nil {
		return res, err
	}
	defer k.stop(ctx)
	if err := k.waitReady(ctx); err != nil {
		return res, err
	}
	root, err := ca.Root(ctx)
	if err != nil {
		return res, err
	}
	roots := x509.NewCertPool()
	roots.AddCert(root)

	before, err := k.journal(ctx)
	if err != nil {
		return res, err
	}
	var first string
	for i := range e.acmeHosts {
		host := fmt.Sprintf("new%d.acme.bench.test", i)
		if i == 0 {
			first = host
		}
		b, err := makeBundle(e.app, host, "acme")
		if err != nil {
			return res, err
		}
		name := "acme" + strconv.Itoa(i)
		if err := stage(k.incoming(), name, b); err != nil {
			return res, err
		}
		at, err := publish(k.incoming(), name)
		if err != nil {
			return res, err
		}
		plain, secure, err := firstAnswers(ctx, k.port, tlsPort, host, roots, 120*time.Second)
		if err != nil {
			return res, err
		}
		res.HTTP, res.HTTPS = append(res.HTTP, plain.Sub(at)), append(res.HTTPS, secure.Sub(at))
		e.logf("  new host %d: HTTP %s, verified HTTPS %s", i, plain.Sub(at).Round(time.Millisecond), secure.Sub(at).Round(time.Millisecond))
	}
	after, err := k.journal(ctx)
	if err != nil {
		return res, err
	}
	res.Hosts = e.acmeHosts
	res.Reloads = count(after, "nginx reloaded") - count(before, "nginx reloaded")

	// The first host's certificate, served as a static file by SNI.
	data, err := os.ReadFile(filepath.Join(k.root, "etc", "nginx", "acme", first+".pem"))
	if err != nil {
		return res, err
	}
	static := filepath.Join(k.root, "static-cert.pem")
	if err := os.WriteFile(static, data, 0o600); err != nil {
		return res, err
	}
	b, err := makeBundleYAML(e.app, fmt.Sprintf("stanzas:\n  - type: webapp\n    exec: ../bin/app\n    args: [--message, static]\n"+
		"    hosts: [static.acme.bench.test]\n    ssl: {certificate: %s, key: %s}\n", static, static))
	if err != nil {
		return res, err
	}
	if err := stage(k.incoming(), "static", b); err != nil {
		return res, err
	}
	if _, err := publish(k.incoming(), "static"); err != nil {
		return res, err
	}
	if _, err := waitBody(ctx, k.port, "static.acme.bench.test", "static", 10*time.Millisecond, 60*time.Second); err != nil {
		return res, err
	}
	master, err := unitPID(ctx, nginxUnit)
	if err != nil {
		return res, err
	}
	for range 3 {
		for _, c := range []struct {
			sni    string
			resume bool
			runs   *[]handshakeRun
		}{
			{first, false, &res.Dynamic}, {"static.acme.bench.test", false, &res.Static},
			{first, true, &res.DynamicResumed}, {"static.acme.bench.test", true, &res.StaticResumed},
		} {
			r, err := handshakes(ctx, tlsPort, c.sni, c.resume, master, 3*time.Second)
			if err != nil {
				return res, err
			}
			*c.runs = append(*c.runs, r)
			e.logf("  handshakes %s (resumed: %v): %.0f/s, nginx %.0f µs each", c.sni, c.resume, r.rate(), cpuPer([]handshakeRun{r}))
		}
	}
	return res, nil
}

// firstAnswers polls host every 10 ms over plain HTTP and over HTTPS (a
// new handshake each time, verified against roots) and returns when each
// first answered 200.
func firstAnswers(ctx context.Context, port, tlsPort int, host string, roots *x509.CertPool, within time.Duration) (plain, secure time.Time, err error) {
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "tcp", "127.0.0.1:"+strconv.Itoa(tlsPort))
		},
		TLSClientConfig: &tls.Config{RootCAs: roots}, DisableKeepAlives: true,
	}}
	deadline := time.Now().Add(within)
	var last error
	for plain.IsZero() || secure.IsZero() {
		if plain.IsZero() {
			if code, _, err := get(ctx, port, host); err == nil && code == 200 {
				plain = time.Now()
			}
		}
		if secure.IsZero() {
			resp, err := c.Get("https://" + host + "/")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					secure = time.Now()
				}
			}
			last = err
		}
		if time.Now().After(deadline) {
			return plain, secure, fmt.Errorf("host %s: no verified HTTPS 200 within %s (last: %v)", host, within, last)
		}
		if err := sleep(ctx, 10*time.Millisecond); err != nil {
			return plain, secure, err
		}
	}
	return plain, secure, nil
}

// handshakes makes TLS connections with sni from 4 clients for dur, each
// with one request, full handshakes or resumed from a session ticket, and
// measures the CPU nginx's workers spent meanwhile.
func handshakes(ctx context.Context, tlsPort int, sni string, resume bool, master int, dur time.Duration) (handshakeRun, error) {
	workers, err := children(master)
	if err != nil {
		return handshakeRun{}, err
	}
	cpu := func() time.Duration {
		var t time.Duration
		for _, pid := range workers {
			if s, err := readProc(pid); err == nil {
				t += s.cpu
			}
		}
		return t
	}
	ctx, cancel := context.WithTimeout(ctx, dur)
	defer cancel()
	var n atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	cpu0, start := cpu(), time.Now()
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := &tls.Dialer{Config: &tls.Config{ServerName: sni, InsecureSkipVerify: true}}
			if resume {
				d.Config.ClientSessionCache = tls.NewLRUClientSessionCache(1)
			}
			for ctx.Err() == nil {
				conn, err := d.DialContext(ctx, "tcp", "127.0.0.1:"+strconv.Itoa(tlsPort))
				if err != nil {
					if ctx.Err() == nil {
						firstErr.CompareAndSwap(nil, err)
					}
					continue
				}
				// One request per connection: a TLS 1.3 client takes the
				// session ticket only when it reads after the handshake.
				_, err = io.WriteString(conn, "GET / HTTP/1.1\r\nHost: "+sni+"\r\nConnection: close\r\n\r\n")
				if err == nil {
					_, err = io.Copy(io.Discard, conn)
				}
				conn.Close()
				if err != nil {
					firstErr.CompareAndSwap(nil, err)
					continue
				}
				n.Add(1)
			}
		}()
	}
	wg.Wait()
	r := handshakeRun{Handshakes: int(n.Load()), Dur: time.Since(start), NginxCPU: cpu() - cpu0}
	if err, _ := firstErr.Load().(error); err != nil && r.Handshakes == 0 {
		return r, fmt.Errorf("TLS handshakes with %s: %w", sni, err)
	}
	return r, nil
}

// children lists a process's child PIDs (nginx's workers).
func children(pid int) ([]int, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err != nil {
		return nil, fmt.Errorf("listing nginx's workers: %w", err)
	}
	var out []int
	for _, f := range strings.Fields(string(data)) {
		if p, err := strconv.Atoi(f); err == nil {
			out = append(out, p)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("nginx has no workers")
	}
	return out, nil
}
