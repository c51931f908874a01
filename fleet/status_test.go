package fleet

import (
	"strings"
	"testing"
)

func TestPrintStatus(t *testing.T) {
	a, b := strings.Repeat("a", 64), strings.Repeat("b", 64)
	tests := []struct {
		name   string
		hosts  []HostApps
		app    string
		ok     bool
		rows   []string // each must appear, as a row's words
		absent []string
	}{
		{
			name: "same everywhere",
			hosts: []HostApps{
				{Host: "h1", Apps: []AppVersion{{Name: "web", Version: "v1", Digest: a}}},
				{Host: "h2", Apps: []AppVersion{{Name: "web", Version: "v2", Digest: a}}},
			},
			ok:     true,
			rows:   []string{"web h1 v1 aaaaaaaaaaaa", "web h2 v2 aaaaaaaaaaaa"},
			absent: []string{"DIFFERS"},
		},
		{
			name: "one host differs",
			hosts: []HostApps{
				{Host: "h1", Apps: []AppVersion{{Name: "web", Version: "v1", Digest: a}, {Name: "api", Version: "x", Digest: b}}},
				{Host: "h2", Apps: []AppVersion{{Name: "web", Version: "v2", Digest: b, Maintenance: true}, {Name: "api", Version: "y", Digest: b}}},
			},
			rows:   []string{"web h1 v1 aaaaaaaaaaaa DIFFERS", "web h2 v2 bbbbbbbbbbbb DIFFERS maintenance", "api h1 x bbbbbbbbbbbb"},
			absent: []string{"api h1 x bbbbbbbbbbbb DIFFERS"},
		},
		{
			name: "missing on a host",
			hosts: []HostApps{
				{Host: "h1", Apps: []AppVersion{{Name: "web", Version: "v1", Digest: a}}},
				{Host: "h2"},
			},
			app:  "web",
			rows: []string{"web h1 v1 aaaaaaaaaaaa DIFFERS", "web h2 - - DIFFERS not on this host"},
		},
		{
			name: "unreachable",
			hosts: []HostApps{
				{Host: "h1", Apps: []AppVersion{{Name: "web", Version: "v1", Digest: a}}},
				{Host: "h2", Error: "ssh: connect to host h2 port 22: Connection refused"},
			},
			rows: []string{"web h1 v1 aaaaaaaaaaaa", "web h2 ? - unreachable: ssh: connect to host h2 port 22: Connection refused"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out strings.Builder
			ok := PrintStatus(&out, tt.hosts, tt.app)
			var rows []string
			for _, l := range strings.Split(out.String(), "\n") {
				rows = append(rows, strings.Join(strings.Fields(l), " "))
			}
			all := strings.Join(rows, "\n")
			if ok != tt.ok {
				t.Errorf("ok = %v, want %v", ok, tt.ok)
			}
			for _, r := range tt.rows {
				if !strings.Contains("\n"+all+"\n", "\n"+r+"\n") {
					t.Errorf("no row %q in:\n%s", r, out.String())
				}
			}
			for _, r := range tt.absent {
				if strings.Contains(all, r) {
					t.Errorf("row %q should not be there:\n%s", r, out.String())
				}
			}
		})
	}
}
