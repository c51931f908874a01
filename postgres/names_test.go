package postgres

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"regexp"
	"strings"
	"testing"
)

func TestBaseName(t *testing.T) {
	tests := []struct{ name, app, want string }{
		{"plain", "myapp", "myapp"},
		{"upper and punctuation", "My-App.v2", "my_app_v2"},
		{"sql injection", `x"; DROP DATABASE postgres; --`, "x___drop_database_postgres____"},
		{"quote", "a'b", "a_b"},
		{"non-ascii is one underscore per character", "café", "caf_"},
		{"empty", "", "app"},
		{"reserved pg_ prefix", "pg_stats", "app_pg_stats"},
		{"long is cut", strings.Repeat("a", 100), strings.Repeat("a", maxIdent-1-suffixLen)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := baseName(tt.app); got != tt.want {
				t.Errorf("baseName(%q) = %q, want %q", tt.app, got, tt.want)
			}
		})
	}
}

var safeName = regexp.MustCompile(`^[a-z0-9_]+_[a-z0-9]{10}$`)

func checkName(t *testing.T, app, name string) {
	t.Helper()
	if len(name) > maxIdent || !safeName.MatchString(name) || strings.HasPrefix(name, "pg_") {
		t.Fatalf("name %q for app %q: not a safe identifier of at most %d bytes", name, app, maxIdent)
	}
}

func FuzzNewName(f *testing.F) {
	for _, s := range []string{"myapp", `x"; DROP DATABASE postgres; --`, "a'b", "pg_x", "", "日本語", strings.Repeat("é", 60)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, app string) {
		checkName(t, app, newName(baseName(app)))
	})
}

func TestNewNameIsRandom(t *testing.T) {
	a, b := newName("x"), newName("x")
	checkName(t, "x", a)
	if a == b {
		t.Fatalf("two names are equal: %q", a)
	}
}

func TestNewPassword(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		p := newPassword()
		if len(p) != passwordLen || strings.Trim(p, alnum) != "" {
			t.Fatalf("password %q: want %d alphanumerics", p, passwordLen)
		}
		if seen[p] {
			t.Fatalf("password %q repeated", p)
		}
		seen[p] = true
	}
}

func TestCatalogName(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"short", "abc", "abc"},
		{"exactly 63", strings.Repeat("a", 63), strings.Repeat("a", 63)},
		{"cut at 63", strings.Repeat("a", 70), strings.Repeat("a", 63)},
		{"never splits a rune", strings.Repeat("a", 62) + "é", strings.Repeat("a", 62)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := catalogName(tt.in); got != tt.want {
				t.Errorf("catalogName(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestQuoteLiteral(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"plain", "abc", "'abc'"},
		{"quote doubled", "a'b", "'a''b'"},
		{"backslash makes an E string", `a\'b`, ` E'a\\''b'`},
		{"injection stays inside", `'; DROP DATABASE postgres; --`, `'''; DROP DATABASE postgres; --'`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := quoteLiteral(tt.in); got != tt.want {
				t.Errorf("quoteLiteral(%q) = %s, want %s", tt.in, got, tt.want)
			}
		})
	}
}

// The server checks a SCRAM login exactly like this, so the RFC 7677
// exchange for "pencil" must verify against our verifier.
func TestScramVerifierRFC7677(t *testing.T) {
	dec := func(s string) []byte {
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	v, err := scramVerifier("pencil", dec("W22ZaJ0SNY7soEsUEjb6gQ=="), 4096)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`^SCRAM-SHA-256\$4096:W22ZaJ0SNY7soEsUEjb6gQ==\$([^:]+):(.+)$`).FindStringSubmatch(v)
	if m == nil {
		t.Fatalf("verifier %q has not PostgreSQL's format", v)
	}
	storedKey, serverKey := dec(m[1]), dec(m[2])
	authMessage := "n=user,r=rOprNGfwEbeRWgbNEkqO," +
		"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096," +
		"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
	proof := dec("dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
	clientSig := hmacSHA256(storedKey, authMessage)
	clientKey := make([]byte, len(proof))
	for i := range proof {
		clientKey[i] = proof[i] ^ clientSig[i]
	}
	if sum := sha256.Sum256(clientKey); !hmac.Equal(sum[:], storedKey) {
		t.Error("the RFC's client proof does not verify against StoredKey")
	}
	if got := base64.StdEncoding.EncodeToString(hmacSHA256(serverKey, authMessage)); got != "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=" {
		t.Errorf("server signature %s, want the RFC's", got)
	}
}

func TestPasswordSQL(t *testing.T) {
	tests := []struct {
		name, pass string
		want       *regexp.Regexp
		wantErr    bool
	}{
		{"keter's alphabet gives a verifier", "abcXYZ019", regexp.MustCompile(`^'SCRAM-SHA-256\$4096:[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+:[A-Za-z0-9+/=]+'$`), false},
		{"printable ASCII with quotes too", `a'b"c`, regexp.MustCompile(`^'SCRAM-SHA-256\$`), false},
		{"non-ASCII is quoted as is", `p'a\ssé`, regexp.MustCompile(`^ E'p''a\\\\ssé'$`), false},
		{"NUL refused", "a\x00b", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := passwordSQL(tt.pass)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if tt.want != nil && !tt.want.MatchString(got) {
				t.Errorf("passwordSQL(%q) = %s, want match %s", tt.pass, got, tt.want)
			}
		})
	}
}
