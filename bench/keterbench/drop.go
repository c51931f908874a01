package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/klauspost/compress/zstd"
)

// zstdBundles makes every bundle a zstd-compressed tarball (-zstd).
var zstdBundles bool

// makeBundle builds a flat-format bundle running the benchmark app with
// --message msg on host.
func makeBundle(app []byte, host, msg string) ([]byte, error) {
	return makeBundleYAML(app, fmt.Sprintf("exec: ../bin/app\nhost: %s\nargs: [\"--message\", %s]\n", host, strconv.Quote(msg)))
}

// makeBundleYAML builds a bundle of the benchmark app (bin/app) with yaml
// as its config/keter.yaml.
func makeBundleYAML(app []byte, yaml string) ([]byte, error) {
	return makeAppBundle(app, "app", yaml)
}

// makeAppBundle builds a bundle of the binary app as bin/NAME with yaml
// as its config/keter.yaml.
func makeAppBundle(app []byte, name, yaml string) ([]byte, error) {
	var buf bytes.Buffer
	var zw io.WriteCloser
	if zstdBundles {
		zw, _ = zstd.NewWriter(&buf, zstd.WithEncoderLevel(zstd.SpeedFastest))
	} else {
		zw, _ = gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	}
	tw := tar.NewWriter(zw)
	for _, f := range []struct {
		name string
		mode int64
		body []byte
	}{
		{"config/", 0o755, nil},
		{"config/keter.yaml", 0o644, []byte(yaml)},
		{"bin/", 0o755, nil},
		{"bin/" + name, 0o755, app},
	} {
		h := &tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(f.body)), Typeflag: tar.TypeReg, ModTime: time.Now()}
		if f.body == nil {
			h.Typeflag, h.Size = tar.TypeDir, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("writing bundle: %w", err)
		}
		if _, err := tw.Write(f.body); err != nil {
			return nil, fmt.Errorf("writing bundle: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("writing bundle: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("writing bundle: %w", err)
	}
	return buf.Bytes(), nil
}

// stage writes incoming/.NAME.keter.tmp, which keter ignores; publish
// renames it to NAME.keter and returns the time just before the rename.
func stage(incoming, name string, data []byte) error {
	if err := os.WriteFile(filepath.Join(incoming, "."+name+".keter.tmp"), data, 0o644); err != nil {
		return fmt.Errorf("staging bundle %s: %w", name, err)
	}
	return nil
}

func publish(incoming, name string) (time.Time, error) {
	at := time.Now()
	if err := os.Rename(filepath.Join(incoming, "."+name+".keter.tmp"), filepath.Join(incoming, name+".keter")); err != nil {
		return at, fmt.Errorf("dropping bundle %s: %w", name, err)
	}
	return at, nil
}

var client = &http.Client{
	Timeout:   2 * time.Second,
	Transport: &http.Transport{MaxIdleConnsPerHost: 8, DisableCompression: true},
}

// get fetches / on 127.0.0.1:port with the Host header host.
func get(ctx context.Context, port int, host string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", "http://127.0.0.1:"+strconv.Itoa(port)+"/", nil)
	if err != nil {
		return 0, "", err
	}
	req.Host = host
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}

// waitBody polls every interval until host answers 200 with body, and
// returns when that first response arrived.
func waitBody(ctx context.Context, port int, host, body string, interval, within time.Duration) (time.Time, error) {
	deadline := time.Now().Add(within)
	var last string
	for {
		code, got, err := get(ctx, port, host)
		now := time.Now()
		if err == nil && code == 200 && got == body {
			return now, nil
		}
		last = fmt.Sprintf("%d %q %v", code, got, err)
		if now.After(deadline) {
			return now, fmt.Errorf("host %s did not answer 200 %q within %s (last: %s)", host, body, within, last)
		}
		if err := sleep(ctx, interval); err != nil {
			return now, err
		}
	}
}
