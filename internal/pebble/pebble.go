// Package pebble runs Let's Encrypt's test CA, Pebble, with its DNS
// companion pebble-challtestsrv, for keter's ACME tests and benchmarks:
// a real ACME server that validates HTTP-01 against keter's listener
// (every name resolves to 127.0.0.1; no validation is skipped).
//
// Build installs both with `go install` (the module proxy is the only
// network it needs); nothing here is used by keter itself.
package pebble

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/keter-systemd/keter/internal/freeport"
)

// Version is the Pebble release built and run.
const Version = "v2.10.3"

const module = "github.com/letsencrypt/pebble/v2"

var (
	buildMu sync.Mutex
	built   map[string]string
)

// Build installs pebble and pebble-challtestsrv into a cache folder (once
// per machine and version) and returns that folder and Pebble's module
// folder, which holds the certificates of its ACME API.
func Build(ctx context.Context) (bin, mod string, err error) {
	buildMu.Lock()
	defer buildMu.Unlock()
	if built != nil {
		return built["bin"], built["mod"], nil
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	bin = filepath.Join(cache, "keter-test", "pebble-"+Version)
	cmd := exec.CommandContext(ctx, "go", "install", module+"/cmd/pebble@"+Version, module+"/cmd/pebble-challtestsrv@"+Version)
	cmd.Dir = os.TempDir() // outside any module: pkg@version ignores it anyway
	cmd.Env = append(os.Environ(), "GOBIN="+bin, "CGO_ENABLED=0", "GOFLAGS=")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", "", fmt.Errorf("go install pebble %s: %v: %s", Version, err, out)
	}
	out, err := exec.CommandContext(ctx, "go", "env", "GOMODCACHE").Output()
	if err != nil {
		return "", "", fmt.Errorf("go env GOMODCACHE: %w", err)
	}
	mod = filepath.Join(strings.TrimSpace(string(out)), module+"@"+Version)
	if _, err := os.Stat(filepath.Join(mod, "test", "certs", "pebble.minica.pem")); err != nil {
		return "", "", fmt.Errorf("pebble's test certificates: %w", err)
	}
	built = map[string]string{"bin": bin, "mod": mod}
	return bin, mod, nil
}

// Options configure one Pebble. Zero ports are picked free.
type Options struct {
	Dir string // work folder: config and logs
	// HTTPPort is where Pebble's validator fetches HTTP-01 answers:
	// keter's plain listener.
	HTTPPort int
	// Validity of issued certificates; 0 is Pebble's 90 days.
	Validity time.Duration
	// ACMEPort serves the ACME API; a fixed one lets a test start Pebble
	// after keter was told its address.
	ACMEPort, MgmtPort, DNSPort, ChallPort, TLSPort int
}

// Server is a running Pebble and challtestsrv.
type Server struct {
	o       Options
	bin     string
	mod     string
	procs   []*exec.Cmd
	logPath string
}

// Start builds (if needed) and starts Pebble and challtestsrv, and
// returns once Pebble's directory answers.
func Start(ctx context.Context, o Options) (*Server, error) {
	bin, mod, err := Build(ctx)
	if err != nil {
		return nil, err
	}
	for _, p := range []*int{&o.ACMEPort, &o.MgmtPort, &o.DNSPort, &o.ChallPort, &o.TLSPort} {
		if *p == 0 {
			if *p, err = freeport.Get(); err != nil {
				return nil, err
			}
		}
	}
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, err
	}
	s := &Server{o: o, bin: bin, mod: mod, logPath: filepath.Join(o.Dir, "pebble.log")}
	if err := s.start(ctx); err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

func (s *Server) start(ctx context.Context) error {
	o := s.o
	validity := int64(o.Validity / time.Second)
	if validity == 0 {
		validity = 90 * 24 * 3600
	}
	conf := map[string]any{"pebble": map[string]any{
		"listenAddress":                  fmt.Sprintf("127.0.0.1:%d", o.ACMEPort),
		"managementListenAddress":        fmt.Sprintf("127.0.0.1:%d", o.MgmtPort),
		"certificate":                    filepath.Join(s.mod, "test/certs/localhost/cert.pem"),
		"privateKey":                     filepath.Join(s.mod, "test/certs/localhost/key.pem"),
		"httpPort":                       o.HTTPPort,
		"tlsPort":                        o.TLSPort,
		"ocspResponderURL":               "",
		"externalAccountBindingRequired": false,
		"domainBlocklist":                []string{"blocked-domain.example"},
		"retryAfter":                     map[string]int{"authz": 1, "order": 1},
		"keyAlgorithm":                   "ecdsa",
		"profiles":                       map[string]any{"default": map[string]any{"description": "keter tests", "validityPeriod": validity}},
	}}
	data, _ := json.MarshalIndent(conf, "", "  ")
	confPath := filepath.Join(o.Dir, "pebble-config.json")
	if err := os.WriteFile(confPath, data, 0o644); err != nil {
		return err
	}
	logf, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	dns := fmt.Sprintf("127.0.0.1:%d", o.DNSPort)
	chall := exec.Command(filepath.Join(s.bin, "pebble-challtestsrv"),
		"-defaultIPv4", "127.0.0.1", "-defaultIPv6", "", "-dnsserver", dns,
		"-http01", "", "-https01", "", "-tlsalpn01", "", "-doh", "",
		"-management", fmt.Sprintf("127.0.0.1:%d", o.ChallPort))
	// The validator's random 0-15 s sleep would only slow the tests;
	// validation itself stays on (never PEBBLE_VA_ALWAYS_VALID).
	pebble := exec.Command(filepath.Join(s.bin, "pebble"), "-config", confPath, "-dnsserver", dns)
	pebble.Env = append(os.Environ(), "PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0")
	for _, c := range []*exec.Cmd{chall, pebble} {
		c.Stdout, c.Stderr, c.Dir = logf, logf, o.Dir
		if err := c.Start(); err != nil {
			return fmt.Errorf("starting %s: %w", filepath.Base(c.Path), err)
		}
		s.procs = append(s.procs, c)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		if _, err := s.get(ctx, s.DirectoryURL()); err == nil {
			break
		} else if ctx.Err() != nil {
			return fmt.Errorf("pebble did not answer at %s: %v; log:\n%s", s.DirectoryURL(), err, s.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
	// challtestsrv may still be starting its management server when
	// Pebble answers (a test's first add-a was refused in CI).
	mgmt := fmt.Sprintf("127.0.0.1:%d", o.ChallPort)
	for {
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", mgmt)
		if err == nil {
			c.Close()
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("challtestsrv did not listen at %s: %v; log:\n%s", mgmt, err, s.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop ends both processes.
func (s *Server) Stop() {
	for _, c := range s.procs {
		c.Process.Kill()
		c.Wait()
	}
	s.procs = nil
}

// Restart starts both again on the same ports; Pebble forgets its
// accounts, certificates and root.
func (s *Server) Restart(ctx context.Context) error {
	s.Stop()
	return s.start(ctx)
}

// DirectoryURL is the ACME directory.
func (s *Server) DirectoryURL() string { return fmt.Sprintf("https://127.0.0.1:%d/dir", s.o.ACMEPort) }

// APIRoot is the file of the root that signs the ACME API's own
// certificate: an ACME client must trust it (acme.trusted-roots).
func (s *Server) APIRoot() string { return filepath.Join(s.mod, "test/certs/pebble.minica.pem") }

// Root returns the root that signs issued certificates (new per start).
func (s *Server) Root(ctx context.Context) (*x509.Certificate, error) {
	body, err := s.get(ctx, fmt.Sprintf("https://127.0.0.1:%d/roots/0", s.o.MgmtPort))
	if err != nil {
		return nil, err
	}
	c, err := parsePEM(body)
	if err != nil {
		return nil, fmt.Errorf("pebble's root: %w", err)
	}
	return c, nil
}

// Issued counts the certificates Pebble issued since it was built.
func (s *Server) Issued() int { return strings.Count(s.Log(), "Issued certificate serial") }

// Issue is one certificate Pebble issued: its serial as Pebble prints it
// (hex of the serial's bytes), its order, and the order whose
// certificate it replaces (an ARI renewal), if any.
type Issue struct{ Serial, Order, Replaces string }

var (
	issuedLine  = regexp.MustCompile(`Issued certificate serial (\S+) for order (\S+)`)
	replaceLine = regexp.MustCompile(`ARI: order "(\S+)" is a replacement of "(\S+)"`)
)

// Issues lists the certificates Pebble issued, oldest first.
func (s *Server) Issues() []Issue {
	log := s.Log()
	replaces := map[string]string{}
	for _, m := range replaceLine.FindAllStringSubmatch(log, -1) {
		replaces[m[1]] = m[2]
	}
	var out []Issue
	for _, m := range issuedLine.FindAllStringSubmatch(log, -1) {
		out = append(out, Issue{Serial: m[1], Order: m[2], Replaces: replaces[m[2]]})
	}
	return out
}

// Log is both processes' output.
func (s *Server) Log() string {
	b, _ := os.ReadFile(s.logPath)
	return string(b)
}

// Resolve makes host resolve to ip for Pebble's validator (127.0.0.2
// is a loopback address nothing listens on: its challenges fail).
func (s *Server) Resolve(ctx context.Context, host, ip string) error {
	body, _ := json.Marshal(map[string]any{"host": host, "addresses": []string{ip}})
	req, err := http.NewRequestWithContext(ctx, "POST", fmt.Sprintf("http://127.0.0.1:%d/add-a", s.o.ChallPort), bytes.NewReader(body))
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("challtestsrv add-a: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("challtestsrv add-a: %s", resp.Status)
	}
	return nil
}

// get fetches from Pebble's HTTPS API, trusting its test root.
func (s *Server) get(ctx context.Context, url string) ([]byte, error) {
	roots, err := os.ReadFile(s.APIRoot())
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(roots)
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != 200 {
		err = fmt.Errorf("%s: %s", url, resp.Status)
	}
	return body, err
}

func parsePEM(data []byte) (*x509.Certificate, error) {
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return nil, errors.New("no certificate")
		}
		if block.Type == "CERTIFICATE" {
			return x509.ParseCertificate(block.Bytes)
		}
	}
}
