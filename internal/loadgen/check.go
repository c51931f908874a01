package loadgen

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// The wire contract with internal/behaveapp.
const (
	headerVersion    = "X-Version"
	headerBodyLength = "X-Body-Length"
	headerBodySHA256 = "X-Body-Sha256"
	headerSHA256     = "X-Sha256"

	streamLines  = 30
	downloadSize = 20 << 20
)

// sentBody is what a request carried.
type sentBody struct {
	n      int64
	sha256 string
}

// check reads resp's body to its end and checks it against what b's
// endpoint sends for version v and the request body sent. A body that ends
// early fails at stage body, a wrong one at stage check.
func check(b Behaviour, resp *http.Response, v string, sent sentBody) error {
	if v == "" {
		return failf("check", "no %s header", headerVersion)
	}
	if n, sum := resp.Header.Get(headerBodyLength), resp.Header.Get(headerBodySHA256); n != strconv.FormatInt(sent.n, 10) || sum != sent.sha256 {
		return failf("check", "request body echoed as %s bytes sha256 %.12s, sent %d bytes sha256 %.12s", n, sum, sent.n, sent.sha256)
	}
	switch b {
	case One, Split, Poll:
		return checkLine(resp, fmt.Sprintf("%s %s %d %s\n", b, v, sent.n, sent.sha256))
	case Stream:
		return checkStream(resp, v)
	case SSE:
		return checkSSE(resp, v)
	case Download:
		return checkDownload(resp)
	}
	return failf("check", "no check for behaviour %q", b)
}

func checkLine(resp *http.Response, want string) error {
	got, err := io.ReadAll(io.LimitReader(resp.Body, int64(len(want))+1))
	if err != nil {
		return fail("body", fmt.Errorf("after %d bytes: %w", len(got), err))
	}
	if string(got) != want {
		return failf("check", "body %q, want %q", got, want)
	}
	return nil
}

// checkStream wants the lines "V 1" to "V 30", then "end 30", then the end.
func checkStream(resp *http.Response, v string) error {
	br := bufio.NewReader(resp.Body)
	for i := 1; i <= streamLines+1; i++ {
		want := fmt.Sprintf("%s %d\n", v, i)
		if i > streamLines {
			want = fmt.Sprintf("end %d\n", streamLines)
		}
		got, err := br.ReadString('\n')
		if err != nil {
			return fail("body", fmt.Errorf("after %d of %d lines: %w", i-1, streamLines, noEOF(err)))
		}
		if got != want {
			return failf("check", "line %d is %q, want %q", i, got, want)
		}
	}
	return drained(br)
}

// checkSSE wants "tick" events with data "V 1" to "V 30", an "end" event
// with data "V 30", then the end.
func checkSSE(resp *http.Response, v string) error {
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		return failf("check", "Content-Type %q", ct)
	}
	br := bufio.NewReader(resp.Body)
	for i := 1; i <= streamLines+1; i++ {
		event, data, err := readEvent(br)
		if err != nil {
			return fail("body", fmt.Errorf("after %d of %d events: %w", i-1, streamLines, noEOF(err)))
		}
		wantEvent, wantData := "tick", fmt.Sprintf("%s %d", v, i)
		if i > streamLines {
			wantEvent, wantData = "end", fmt.Sprintf("%s %d", v, streamLines)
		}
		if event != wantEvent || data != wantData {
			return failf("check", "event %d is %q %q, want %q %q", i, event, data, wantEvent, wantData)
		}
	}
	return drained(br)
}

// readEvent reads one server-sent event's type and data.
func readEvent(br *bufio.Reader) (event, data string, err error) {
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return "", "", err
		}
		line = strings.TrimSuffix(line, "\n")
		if line == "" {
			return event, data, nil
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "event":
			event = value
		case "data":
			data = value
		}
	}
}

// checkDownload wants 20 MiB whose sha256 is the header's.
func checkDownload(resp *http.Response) error {
	want := resp.Header.Get(headerSHA256)
	if resp.ContentLength != downloadSize {
		return failf("check", "Content-Length %d, want %d", resp.ContentLength, downloadSize)
	}
	h := sha256.New()
	n, err := io.Copy(h, resp.Body)
	if err != nil {
		return fail("body", fmt.Errorf("after %d of %d bytes: %w", n, downloadSize, noEOF(err)))
	}
	if got := hex.EncodeToString(h.Sum(nil)); n != downloadSize || got != want {
		return failf("check", "%d bytes, sha256 %.12s, want %d bytes, sha256 %.12s", n, got, downloadSize, want)
	}
	return nil
}

// drained wants nothing more before the body's end.
func drained(br *bufio.Reader) error {
	rest, err := io.ReadAll(io.LimitReader(br, 1<<10))
	if err != nil {
		return fail("body", fmt.Errorf("before its end: %w", noEOF(err)))
	}
	if len(rest) > 0 {
		return failf("check", "%d bytes after the end: %.40q", len(rest), rest)
	}
	return nil
}
