package postgres

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strings"
)

// maxIdent is PostgreSQL's identifier limit in bytes (NAMEDATALEN-1);
// longer names are silently truncated by the server.
const maxIdent = 63

const (
	suffixLen   = 10 // random part of role and database names, as in Keter
	passwordLen = 32
	lowerDigits = "abcdefghijklmnopqrstuvwxyz0123456789"
	alnum       = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
)

// baseName turns an app name into the stem of its role and database names
// the way Keter does (ASCII letters lower-cased, digits kept, anything else
// becomes '_'), cut so that stem + '_' + suffix fits in maxIdent bytes.
func baseName(app string) string {
	var b strings.Builder
	for _, r := range app {
		switch {
		case r >= 'A' && r <= 'Z':
			b.WriteRune(r + ('a' - 'A'))
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	s := b.String()
	if s == "" {
		s = "app"
	}
	// Role names starting with pg_ are reserved by the server.
	if strings.HasPrefix(s, "pg_") {
		s = "app_" + s
	}
	if n := maxIdent - 1 - suffixLen; len(s) > n {
		s = s[:n]
	}
	return s
}

// newName is base + '_' + a random lower-case suffix.
func newName(base string) string {
	return base + "_" + randomString(suffixLen, lowerDigits)
}

// newPassword is a strong password from an alphabet that needs no quoting
// anywhere (SQL, URLs, shell, YAML).
func newPassword() string { return randomString(passwordLen, alnum) }

func randomString(n int, alphabet string) string {
	// Rejection sampling keeps every character equally likely.
	limit := byte(256 - 256%len(alphabet))
	out := make([]byte, 0, n)
	buf := make([]byte, 2*n)
	for len(out) < n {
		rand.Read(buf) // never fails (crypto/rand panics instead)
		for _, c := range buf {
			if c < limit && len(out) < n {
				out = append(out, alphabet[int(c)%len(alphabet)])
			}
		}
	}
	return string(out)
}

// catalogName is the name the server stores for s: identifiers longer than
// maxIdent bytes are truncated (Haskell Keter never cut long app names).
func catalogName(s string) string {
	if len(s) <= maxIdent {
		return s
	}
	s = s[:maxIdent]
	// Do not split a UTF-8 sequence, as the server does not.
	for len(s) > 0 && s[len(s)-1]&0xC0 == 0x80 {
		s = s[:len(s)-1]
	}
	if len(s) > 0 && s[len(s)-1] >= 0xC0 {
		s = s[:len(s)-1]
	}
	return s
}

// passwordSQL returns the literal for a PASSWORD clause. For printable
// ASCII (every password keter makes) it is a SCRAM-SHA-256 verifier
// computed here, so the password itself never reaches the server's logs;
// other passwords (hand-edited entries) are quoted as a literal and left
// to the server's SASLprep.
func passwordSQL(password string) (string, error) {
	if strings.ContainsRune(password, 0) {
		return "", fmt.Errorf("password contains a NUL byte")
	}
	for i := 0; i < len(password); i++ {
		if password[i] < 0x20 || password[i] > 0x7e {
			return quoteLiteral(password), nil
		}
	}
	salt := make([]byte, 16)
	rand.Read(salt)
	v, err := scramVerifier(password, salt, 4096)
	if err != nil {
		return "", err
	}
	return quoteLiteral(v), nil
}

// scramVerifier is what PostgreSQL stores in pg_authid.rolpassword for
// SCRAM-SHA-256 (RFC 5802/7677); password must already be SASLprep'd,
// which printable ASCII is.
func scramVerifier(password string, salt []byte, iterations int) (string, error) {
	salted, err := pbkdf2.Key(sha256.New, password, salt, iterations, sha256.Size)
	if err != nil {
		return "", fmt.Errorf("deriving scram key: %w", err)
	}
	clientKey := hmacSHA256(salted, "Client Key")
	storedKey := sha256.Sum256(clientKey)
	serverKey := hmacSHA256(salted, "Server Key")
	enc := base64.StdEncoding.EncodeToString
	return fmt.Sprintf("SCRAM-SHA-256$%d:%s$%s:%s", iterations, enc(salt), enc(storedKey[:]), enc(serverKey)), nil
}

func hmacSHA256(key []byte, msg string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}

// quoteLiteral quotes s as an SQL string constant whatever the server's
// standard_conforming_strings, like libpq's PQescapeLiteral: quotes are
// doubled, and with a backslash present it becomes an E-prefixed string with
// backslashes doubled too.
func quoteLiteral(s string) string {
	q := "'" + strings.ReplaceAll(s, "'", "''") + "'"
	if strings.Contains(s, `\`) {
		q = " E" + strings.ReplaceAll(q, `\`, `\\`)
	}
	return q
}
