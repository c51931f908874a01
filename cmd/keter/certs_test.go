package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/keter-systemd/keter/status"
)

func TestPrintCertStorage(t *testing.T) {
	since := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		name string
		s    *status.CertStorage
		want []string // "" for no output
	}{
		{"no acme", nil, nil},
		{"local files", &status.CertStorage{Kind: "files", Where: "/var/lib/keter/etc/acme", Reachable: true}, nil},
		{"shared, up", &status.CertStorage{Kind: "postgres", Where: "database d as r on db:5432", Shared: true, Reachable: true},
			[]string{"certificate storage (shared): postgres, database d as r on db:5432: reachable\n"}},
		{"shared, down", &status.CertStorage{Kind: "postgres", Where: "database d as r on db:5432", Shared: true, Since: since,
			Error: "connecting: refused\nsecond line"},
			[]string{"UNREACHABLE since ", "keep serving", "\n  connecting: refused\n  second line\n"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			printCertStorage(&b, tc.s)
			if tc.want == nil && b.Len() > 0 {
				t.Errorf("printed %q", b.String())
			}
			for _, w := range tc.want {
				if !strings.Contains(b.String(), w) {
					t.Errorf("%q lacks %q", b.String(), w)
				}
			}
		})
	}
}
