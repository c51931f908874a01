package unitgen

import (
	"errors"
	"strings"
	"testing"
)

func TestUnitName(t *testing.T) {
	tests := []struct {
		app, version, stanza string
		want                 string
	}{
		{"demo", "1", "web0", `keter-app-demo-1-web0.service`},
		{"my-app", "12", "bg1", `keter-app-my-app-12-bg1.service`},
		{"site.example_1", "2024.1", "web3", `keter-app-site.example_1-2024.1-web3.service`},
		{"a b/c", "v-1", "web0", `keter-app-a\x20b\x2fc-v\x2d1-web0.service`},
		{`back\slash`, "1", "web0", `keter-app-back\x5cslash-1-web0.service`},
		{"ünï", "1", "web0", `keter-app-\xc3\xbcn\xc3\xaf-1-web0.service`},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			got, err := UnitName(tt.app, tt.version, tt.stanza)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("UnitName = %q, want %q", got, tt.want)
			}
			if !validUnitName(got) {
				t.Errorf("%q is not a valid unit name", got)
			}
			m, ok := ParseUnitName(got)
			if !ok || m != (Meta{App: tt.app, Version: tt.version, Stanza: tt.stanza}) {
				t.Errorf("ParseUnitName = %+v, %v", m, ok)
			}
			if !strings.HasPrefix(got, AppPrefix(tt.app)) {
				t.Errorf("%q does not start with AppPrefix %q", got, AppPrefix(tt.app))
			}
		})
	}
}

func TestUnitNameRefuses(t *testing.T) {
	for _, tt := range []struct{ app, version, stanza string }{
		{"", "1", "web0"}, {"a", "", "web0"}, {"a", "1", ""}, {strings.Repeat("x", 240), "1", "web0"},
	} {
		if n, err := UnitName(tt.app, tt.version, tt.stanza); !errors.Is(err, ErrName) {
			t.Errorf("UnitName(%q, %q, %q) = %q, %v; want ErrName", tt.app, tt.version, tt.stanza, n, err)
		}
	}
}

func TestParseUnitNameRejects(t *testing.T) {
	for _, n := range []string{
		"nginx.service", "keter-app-demo.service", "keter-app-demo-1.service", "keter-app-demo-1-web0.scope",
		`keter-app-demo-1-w\x2.service`, `keter-app-d\x2dmo-1-web0.service` /* not canonical */, "keter-app--1-web0.service",
	} {
		if m, ok := ParseUnitName(n); ok {
			t.Errorf("ParseUnitName(%q) = %+v, want false", n, m)
		}
	}
}

func TestUserName(t *testing.T) {
	tests := []struct{ app, want string }{
		{"demo", "keter-app-demo"},
		{"my-app_2", "keter-app-my-app_2"},
		{"site.example", "keter-site_example-"},
		{"a-very-long-application-name", "keter-a-very-long--"},
	}
	seen := map[string]string{}
	for _, tt := range tests {
		got := userName(tt.app)
		if !strings.HasPrefix(got, tt.want) || len(got) > 31 || !validUser(got) {
			t.Errorf("userName(%q) = %q, want prefix %q, ≤31 chars, valid", tt.app, got, tt.want)
		}
		if other, dup := seen[got]; dup {
			t.Errorf("apps %q and %q share user %q", other, tt.app, got)
		}
		seen[got] = tt.app
		if userName(tt.app) != got {
			t.Errorf("userName(%q) is not stable", tt.app)
		}
	}
}

// validUnitName is systemd's unit_name_is_valid for plain names.
func validUnitName(n string) bool {
	if len(n) > 255 || !strings.HasSuffix(n, ".service") {
		return false
	}
	for i := 0; i < len(n); i++ {
		c := n[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte(":-_.\\", c) >= 0) {
			return false
		}
	}
	return true
}

func FuzzUnitName(f *testing.F) {
	f.Add("demo", "1", "web0")
	f.Add("a-b-c", "x-y", "bg-1")
	f.Add(`\x2d`, "\x00", "é")
	f.Fuzz(func(t *testing.T, app, version, stanza string) {
		n, err := UnitName(app, version, stanza)
		if err != nil {
			return
		}
		if !validUnitName(n) {
			t.Fatalf("invalid unit name %q", n)
		}
		m, ok := ParseUnitName(n)
		if !ok || m != (Meta{App: app, Version: version, Stanza: stanza}) {
			t.Fatalf("ParseUnitName(%q) = %+v, %v", n, m, ok)
		}
	})
}

func FuzzParseUnitName(f *testing.F) {
	f.Add("keter-app-demo-1-web0.service")
	f.Add(`keter-app-a\x20b-1-web0.service`)
	f.Fuzz(func(t *testing.T, n string) {
		m, ok := ParseUnitName(n)
		if !ok {
			return
		}
		again, err := m.Unit()
		if err != nil || again != n {
			t.Fatalf("ParseUnitName(%q) = %+v does not name it back (%q, %v)", n, m, again, err)
		}
	})
}

func TestInstanceUnitNames(t *testing.T) {
	for _, c := range []struct {
		m    Meta
		name string
	}{
		{Meta{App: "shop", Version: "v1", Stanza: "web0"}, "keter-app-shop-v1-web0.service"},
		{Meta{App: "shop", Version: "v1", Stanza: "web0", Instance: 2}, "keter-app-shop-v1-web0.2.service"},
		{Meta{App: "shop", Version: "v1", Stanza: "a.b"}, `keter-app-shop-v1-a\x2eb.service`},
		{Meta{App: "shop", Version: "v1", Stanza: "a.b", Instance: 12}, `keter-app-shop-v1-a\x2eb.12.service`},
	} {
		n, err := c.m.Unit()
		if err != nil || n != c.name {
			t.Errorf("%+v.Unit() = %q, %v; want %q", c.m, n, err, c.name)
		}
		if back, ok := ParseUnitName(c.name); !ok || back != c.m {
			t.Errorf("ParseUnitName(%q) = %+v, %v; want %+v", c.name, back, ok, c.m)
		}
	}
	for _, bad := range []string{"keter-app-shop-v1-web0.0.service", "keter-app-shop-v1-web0.x.service", "keter-app-shop-v1-web0.02.service"} {
		if m, ok := ParseUnitName(bad); ok {
			t.Errorf("ParseUnitName(%q) = %+v, want false", bad, m)
		}
	}
}
