// Package acme gets certificates for app hosts from an ACME CA (Let's
// Encrypt by default) and keeps them renewed, with certmagic doing the
// ACME work: account, orders, HTTP-01, renewal (ACME renewal info where
// the CA offers it), retries with backoff and storage locks.
//
// It owns the account and certificates under ROOT/etc/acme, or in the
// PostgreSQL database of acme.storage (acme/pgstore), which several
// keters share: then it also reads there, every SharedCheck, what other
// hosts got or renewed, and reports whether the database answers. The file per
// host that nginx reads at each handshake (ROOT/etc/nginx/acme/HOST.pem,
// the chain then the key, replaced by a rename), the temporary
// certificates served until the CA's arrive, and the HTTP-01 responder
// that nginx proxies /.well-known/acme-challenge/ to.
//
// It must not write nginx configuration nor decide which hosts exist: the
// front door tells it through Ensure which hosts it serves from ACME.
package acme
