package acme

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"time"

	"github.com/keter-systemd/keter/internal/atomicfile"
)

// TemporaryOrg marks the certificates keter makes itself: any client
// that looks sees they are not the CA's.
const TemporaryOrg = "keter temporary certificate: waiting for the ACME CA"

// writeTemporary gives host a self-signed certificate until the CA's.
func (m *Manager) writeTemporary(host string) error {
	data, err := selfSigned(host, TemporaryOrg)
	if err != nil {
		return err
	}
	return m.writeOwned(m.file(host), data)
}

// writeFallback makes the certificate of names without a file, unless a
// valid one is there.
func (m *Manager) writeFallback() error {
	if data, err := readFile(m.fallback); err == nil {
		if b, _ := pem.Decode(data); b != nil {
			if c, err := x509.ParseCertificate(b.Bytes); err == nil && time.Until(c.NotAfter) > 30*24*time.Hour {
				return nil
			}
		}
	}
	data, err := selfSigned("", "keter: no certificate for this name")
	if err != nil {
		return err
	}
	return m.writeOwned(m.fallback, data)
}

// selfSigned is a certificate for host (none when empty) and its key,
// as one PEM file.
func selfSigned(host, org string) ([]byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("acme: making a temporary key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: host, Organization: []string{org}},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if host != "" {
		tmpl.DNSNames = []string{host}
	} else {
		tmpl.Subject.CommonName = "keter"
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("acme: making a temporary certificate: %w", err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	return append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})...), nil
}

// writeOwned replaces path atomically with a 0600 file of nginx's worker
// user: chain and key change together for the next handshake.
func (m *Manager) writeOwned(path string, data []byte) error {
	tmp, err := atomicfile.WriteTemp(path, data, 0o600)
	if err != nil {
		return err
	}
	if err := os.Chown(tmp, m.uid, m.gid); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("acme: giving %s to nginx's worker user: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("acme: installing %s: %w", path, err)
	}
	return atomicfile.SyncDir(filepath.Dir(path))
}

func readFile(path string) ([]byte, error) { return os.ReadFile(path) }
