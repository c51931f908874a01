package unitgen

import (
	"errors"
	"strings"
	"testing"
)

// parseEnvFile reads what EnvFile writes the way systemd 252's
// parse_env_file does for double-quoted values: \ escapes only \ " ` $,
// a backslash-newline is dropped, anything else stays literal.
func parseEnvFile(s string) (map[string]string, error) {
	vars := map[string]string{}
	for s != "" {
		k, rest, ok := strings.Cut(s, `="`)
		if !ok || strings.ContainsAny(k, "\n ") {
			return nil, errors.New("line without KEY=\"")
		}
		var v strings.Builder
		i := 0
		for ; i < len(rest); i++ {
			c := rest[i]
			if c == '"' {
				break
			}
			if c == '\\' && i+1 < len(rest) {
				i++
				switch n := rest[i]; n {
				case '"', '\\', '`', '$':
					v.WriteByte(n)
				case '\n':
				default:
					v.WriteByte('\\')
					v.WriteByte(n)
				}
				continue
			}
			v.WriteByte(c)
		}
		if i >= len(rest) || i+1 >= len(rest) || rest[i+1] != '\n' {
			return nil, errors.New("unterminated value")
		}
		vars[k] = v.String()
		s = rest[i+2:]
	}
	return vars, nil
}

func TestEnvFileRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		vars map[string]string
	}{
		{"plain", map[string]string{"A": "b", "PGPASS": "abcdefghij"}},
		{"shell specials", map[string]string{"X": `$HOME ${PATH} "q" 'single' \n \\ back` + "`tick`"}},
		{"newlines and comments", map[string]string{"CERT": "-----BEGIN-----\nabc\n# not a comment\n-----END-----\n", "E": ""}},
		{"unicode and spaces", map[string]string{"GREETING": "  grüße \t 日本 "}},
		{"trailing backslash", map[string]string{"T": `ends with \`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseEnvFile(string(EnvFile(tt.vars)))
			if err != nil {
				t.Fatalf("%v in:\n%s", err, EnvFile(tt.vars))
			}
			if !equalMaps(got, tt.vars) {
				t.Errorf("round trip = %q, want %q", got, tt.vars)
			}
		})
	}
}

func FuzzEnvFile(f *testing.F) {
	f.Add("KEY", `va"l$ue\`)
	f.Add("K_1", "multi\nline\r\n`x`")
	f.Fuzz(func(t *testing.T, k, v string) {
		if checkVar(k, v) != nil {
			return
		}
		got, err := parseEnvFile(string(EnvFile(map[string]string{k: v})))
		if err != nil {
			t.Fatal(err)
		}
		if got[k] != v || len(got) != 1 {
			t.Fatalf("round trip of %q = %q", v, got)
		}
	})
}
