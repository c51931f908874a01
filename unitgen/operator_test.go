package unitgen

import (
	"errors"
	"strings"
	"testing"

	"github.com/keter-systemd/keter/bundle"
)

// The operator may not take over what keter sets for the app to listen
// and link by: Build refuses, naming the variable, and so does the check
// `keter env set` runs.
func TestBuildRefusesOperatorPortVariables(t *testing.T) {
	tests := []struct {
		name     string
		stanza   bundle.Stanza
		operator map[string]string
		want     string
	}{
		{"PORT", webStanza(nil), map[string]string{"PORT": "80"}, "PORT"},
		{"APPROOT", webStanza(nil), map[string]string{"APPROOT": "http://x"}, "APPROOT"},
		{"a port-env-vars name", webStanza(func(w *bundle.WebApp) { w.PortEnvVars = []string{"YESOD_PORT"} }),
			map[string]string{"YESOD_PORT": "80"}, "port-env-vars"},
		{"PORT in a background stanza too", bgStanza(-1, 1), map[string]string{"PORT": "80"}, "PORT"},
		{"a bad name", webStanza(nil), map[string]string{"1X": "v"}, "1X"},
		{"a NUL", webStanza(nil), map[string]string{"X": "a\x00b"}, "NUL"},
		{"too long", webStanza(nil), map[string]string{"X": strings.Repeat("a", MaxOperatorValue+1)}, "longer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Build(Input{App: "demo", Version: "1", Stanza: tt.stanza, Dir: "/srv/demo", Port: 4000,
				Global: global(), EnvDir: "/etc/keter/env", Operator: tt.operator})
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "operator env") {
				t.Fatalf("Build = %v, want an operator env error naming %s", err, tt.want)
			}
		})
	}
	if err := CheckOperatorVar("YESOD_PORT", "1", []string{"YESOD_PORT"}); !errors.Is(err, ErrReservedVar) {
		t.Errorf("CheckOperatorVar(YESOD_PORT) = %v, want ErrReservedVar", err)
	}
	if err := CheckOperatorVar("DATABASE_URL", "postgres://u:p@h/db?x=1", nil); err != nil {
		t.Errorf("CheckOperatorVar(DATABASE_URL) = %v", err)
	}
}
