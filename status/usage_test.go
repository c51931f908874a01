package status

import (
	"strings"
	"testing"

	"github.com/keter-systemd/keter/usage"
)

func TestBytesAndCPU(t *testing.T) {
	for _, tt := range []struct {
		n    uint64
		want string
	}{{0, "0 B"}, {1023, "1023 B"}, {1536, "1.5 KiB"}, {3 << 20, "3.0 MiB"}, {5 << 30, "5.0 GiB"}, {1 << 62, "4096.0 PiB"}} {
		if got := Bytes(tt.n); got != tt.want {
			t.Errorf("Bytes(%d) = %q, want %q", tt.n, got, tt.want)
		}
	}
	if got := CPU(1_234_567_890); got != "1.23 s" {
		t.Errorf("CPU = %q", got)
	}
}

func TestStanzaUsageGroupsByApp(t *testing.T) {
	totals := map[usage.Key]usage.Stanza{
		{App: "a", Stanza: "web1"}:    {Stanza: "web1"},
		{App: "b", Stanza: "web0"}:    {Stanza: "web0"},
		{App: "a", Stanza: "web0"}:    {Stanza: "web0"},
		{App: "a", Stanza: "worker0"}: {Stanza: "worker0"},
	}
	got := stanzaUsage(totals)
	var names []string
	for _, s := range got["a"] {
		names = append(names, s.Stanza)
	}
	if strings.Join(names, " ") != "web0 web1 worker0" || len(got["b"]) != 1 || len(got) != 2 {
		t.Fatalf("app a has %v, all %v: want a's three stanzas sorted, b's one", names, got)
	}
}
