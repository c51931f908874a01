package bundle

import (
	"strings"
	"testing"
	"time"
)

// frontErrorCases join parseErrorCases: TestParseErrors checks their
// messages and FuzzParse starts from them.
var frontErrorCases = []struct {
	name string
	yaml string
	want []string
}{
	{"front bad values", `stanzas:
  - type: webapp
    exec: ../a
    host: a.com
    max-body-size: 10x
    connect-timeout: 5
    response-buffering: sometimes
  - type: reverse-proxy
    reversing-host: b.com
    reversed-host: 127.0.0.1
    reversed-port: 80
    max-body-size: "1m; } server {"
    connect-timeout: 2m
  - type: static-files
    host: c.com
    root: ../public
    connect-timeout: 5s
    gzip: nope
  - type: webapp
    exec: ../a
    host: f.com
    connect-timeout: 500us
  - type: redirect
    host: d.com
    actions: [{host: e.com}]
    max-body-size: 1m
    gzip: false
`, []string{
		`stanzas[0].max-body-size: invalid value: size "10x" must be a whole number of bytes with an optional k, m or g suffix (KiB, MiB, GiB), such as 10m or 512k; 0 means no limit`,
		"stanzas[0].connect-timeout: invalid value: must be a duration with its unit, such as 30s or 2m",
		"stanzas[0].response-buffering: invalid value: must be true or false",
		`stanzas[1].max-body-size: invalid value: size "1m; } server {"`,
		"stanzas[1].connect-timeout: invalid value: must be more than 0s and at most 1m15s, found 2m0s",
		"stanzas[2].connect-timeout: invalid value: not for static-files stanzas",
		"stanzas[2].gzip: invalid value: must be true or false",
		"stanzas[3].connect-timeout: invalid value: must be at least 1ms, found 500µs",
		"stanzas[4].max-body-size: invalid value: not for redirect stanzas",
		"stanzas[4].gzip: invalid value: not for redirect stanzas",
	}},
}

func init() {
	parseErrorCases = append(parseErrorCases, frontErrorCases...)
}

func TestFrontKeys(t *testing.T) {
	c, warns, err := ParseWithWarnings([]byte(`stanzas:
  - type: webapp
    exec: ../a
    host: a.com
    max-body-size: 1G
    connect-timeout: 2500ms
    response-buffering: false
  - type: reverse-proxy
    reversing-host: b.com
    reversed-host: 127.0.0.1
    reversed-port: 80
    gzip: false
  - type: static-files
    host: c.com
    root: ../public
    max-body-size: 0
  - type: webapp
    exec: ../b
    host: d.com
`))
	if err != nil || len(warns) != 0 {
		t.Fatalf("err %v, warnings %q", err, warns)
	}
	want := []Front{
		{MaxBodySize: "1g", ConnectTimeout: 2500 * time.Millisecond, NoBuffering: true},
		{NoGzip: true},
		{MaxBodySize: "0"},
		{},
	}
	for i, f := range want {
		if got := c.Stanzas[i].Front; got != f {
			t.Errorf("stanzas[%d]: %+v, want %+v", i, got, f)
		}
	}
}

func TestValidBodySize(t *testing.T) {
	for _, ok := range []string{"0", "1", "512k", "10m", "10M", "1g", "999999999"} {
		if err := ValidBodySize(ok); err != nil {
			t.Errorf("%q refused: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "m", "10x", "1.5m", "-1", "1m ", " 1m", "1mb", "1t", "1234567890", "1m;", "$x", "1k}"} {
		err := ValidBodySize(bad)
		if err == nil || !strings.Contains(err.Error(), "such as 10m") {
			t.Errorf("%q: %v, want a refusal saying what to write", bad, err)
		}
	}
}
