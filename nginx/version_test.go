package nginx

import "testing"

func TestMapSupport(t *testing.T) {
	for out, ok := range map[string]bool{
		"nginx version: nginx/1.22.1\n":        true,
		"nginx version: nginx/1.19.10":         true,
		"nginx version: nginx/1.27.3 (Ubuntu)": true,
		"nginx version: nginx/2.0.0":           true,
		"nginx version: nginx/1.19.9":          false,
		"nginx version: nginx/1.18.0 (Ubuntu)": false,
		"nginx version: openresty/1.21.4.1":    false,
		"":                                     false,
	} {
		if err := mapSupport(out); (err == nil) != ok {
			t.Errorf("mapSupport(%q) = %v, want ok=%v", out, err, ok)
		}
	}
}

func TestHTTP2Spelling(t *testing.T) {
	for out, on := range map[string]bool{
		"nginx version: nginx/1.22.1\n": false,
		"nginx version: nginx/1.25.0":   false,
		"nginx version: nginx/1.25.1":   true,
		"nginx version: nginx/1.27.4":   true,
	} {
		v, err := parseVersion(out)
		if err != nil {
			t.Fatal(err)
		}
		if got := atLeast(v, 1, 25, 1); got != on {
			t.Errorf("%q: http2 on = %v, want %v", out, got, on)
		}
	}
}
