// Package pgstore is a certmagic.Storage (with its Locker) in PostgreSQL,
// so keters on several hosts behind one load balancer share the ACME
// account, the certificates and the HTTP-01 challenge tokens, and order
// each name once.
//
// It owns two tables in the database its connection string names,
// keter_certmagic (key, value, modified) and keter_certmagic_locks
// (name, owner, expires), created on first use if missing. Keys follow
// certmagic's folder semantics: "a" is a directory of "a/b"; Delete of a
// directory deletes what is under it; List and Stat see directories as
// certmagic's FileStorage does.
//
// Locks are rows with an expiry that the holder pushes forward while it
// holds them (session advisory locks would die with their connection, but
// certmagic may Lock and Unlock a name from different goroutines and this
// store reconnects after failures): a holder that dies, or loses the
// database, lets its lock go after LockTTL.
//
// It must never log or return its connection string or password: every
// error it returns is redacted. It does not decide what is stored.
package pgstore
