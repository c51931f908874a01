package nginx

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// writeSelfSigned writes NAME.pem and NAME.key, a self-signed certificate
// for the given DNS names, into dir.
func writeSelfSigned(t testing.TB, dir, name string, dnsNames ...string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name},
		DNSNames:              dnsNames,
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:                  true,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".key"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// writeTestCerts makes the files renderCases refer to: cert.pem/key.pem
// (the listener's), chain.pem (an intermediate), a.pem/a.key, b.pem/b.key.
func writeTestCerts(t testing.TB, dir string) {
	t.Helper()
	writeSelfSigned(t, dir, "cert", "listener.test", "localhost")
	writeSelfSigned(t, dir, "chain", "intermediate.test")
	writeSelfSigned(t, dir, "a", "a.example.com")
	writeSelfSigned(t, dir, "b", "b.example.com")
	// renderCases name the listener key key.pem.
	if err := os.Rename(filepath.Join(dir, "cert.key"), filepath.Join(dir, "key.pem")); err != nil {
		t.Fatal(err)
	}
}
