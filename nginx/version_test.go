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
