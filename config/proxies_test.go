package config

import (
	"strconv"
	"strings"
	"testing"
)

func TestTrustedProxies(t *testing.T) {
	c, warns, err := Parse([]byte("root: /srv/k\nip-from-header: true\ntrusted-proxies: [10.0.0.0/8, 192.168.1.7, \"2001:db8::1/32\"]\n"), "/etc/keter")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range c.TrustedPrefixes() {
		got = append(got, p.String())
	}
	if strings.Join(got, " ") != "10.0.0.0/8 192.168.1.7/32 2001:db8::/32" {
		t.Errorf("prefixes %q", got)
	}
	if len(warns) != 1 || !strings.Contains(string(warns[0]), "implied by trusted-proxies") {
		t.Errorf("warnings %q", warns)
	}
	_, warns, err = Parse([]byte("root: /srv/k\nip-from-header: true\n"), "/etc/keter")
	if err != nil || len(warns) != 1 || !strings.Contains(string(warns[0]), "trusted-proxies") {
		t.Errorf("ip-from-header alone: err %v, warnings %q; want one naming trusted-proxies", err, warns)
	}
	for _, bad := range []string{"10.0.0.0/8; } server {", "10.0.0.0/33", "example.com", "fe80::1%eth0", "$remote_addr", "10.0.0.1 10.0.0.2", ""} {
		_, _, err := Parse([]byte("root: /srv/k\ntrusted-proxies: ["+strconv.Quote(bad)+"]\n"), "/etc/keter")
		if err == nil || !strings.Contains(err.Error(), "trusted-proxies[0]") {
			t.Errorf("%q: %v, want a refusal naming trusted-proxies[0]", bad, err)
		}
	}
}
