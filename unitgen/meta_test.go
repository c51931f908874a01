package unitgen

import "testing"

func TestMetaRoundTrip(t *testing.T) {
	for _, m := range []Meta{
		{App: "demo", Version: "1", Stanza: "web0"},
		{App: "my app", Version: `v"2"`, Stanza: "bg1"},
		{App: "tab\there", Version: "ünï", Stanza: `back\slash`},
		{App: "app=x version=y", Version: "1", Stanza: "web0"},
		{App: "demo", Version: "1", Stanza: "web0", Instance: 3},
	} {
		d := Description(m)
		got, ok := ParseMeta(d)
		if !ok || got != m {
			t.Errorf("ParseMeta(%q) = %+v, %v; want %+v", d, got, ok, m)
		}
	}
	if d := Description(Meta{App: "demo", Version: "3", Stanza: "web0"}); d != "keter app=demo version=3 stanza=web0" {
		t.Errorf("Description = %q", d)
	}
	if d := Description(Meta{App: "demo", Version: "3", Stanza: "web0", Instance: 2}); d != "keter app=demo version=3 stanza=web0 instance=2" {
		t.Errorf("Description = %q", d)
	}
}

func TestParseMetaRejects(t *testing.T) {
	for _, d := range []string{
		"", "/usr/bin/python3 -m http.server", "keter app=demo", "keter app=demo version=1",
		"keter app= version=1 stanza=web0", "keter app=demo version=1 stanza=web0 extra",
		`keter app="demo version=1 stanza=web0`, "keter version=1 app=demo stanza=web0",
		"keter app=demo version=1 stanza=web0 instance=0", "keter app=demo version=1 stanza=web0 instance=x",
	} {
		if m, ok := ParseMeta(d); ok {
			t.Errorf("ParseMeta(%q) = %+v, want false", d, m)
		}
	}
}

func FuzzParseMeta(f *testing.F) {
	f.Add("keter app=demo version=1 stanza=web0")
	f.Add(`keter app="a b" version="\x00" stanza=bg1`)
	f.Fuzz(func(t *testing.T, d string) {
		m, ok := ParseMeta(d)
		if !ok {
			return
		}
		if again, ok := ParseMeta(Description(m)); !ok || again != m {
			t.Fatalf("ParseMeta(Description(%+v)) = %+v, %v", m, again, ok)
		}
	})
}
