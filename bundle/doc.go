// Package bundle opens keter bundles (NAME.keter: a gzipped tarball holding
// config/keter.yml or config/keter.yaml plus the app's files): it waits for
// a bundle to be completely written, unpacks it safely into one folder,
// parses and validates its config in either of Haskell Keter's formats into
// the shared model (AppConfig), and builds bundles from a folder.
//
// Everything read from a bundle is untrusted. Parse refuses any value that
// will reach the nginx config (hosts, URLs, paths, header names) unless it
// is made of a small safe alphabet, and Unpack never writes outside its
// destination folder.
//
// Unknown keys are not errors (Keter silently ignores them); they are
// returned as warnings by ParseWithWarnings and LoadWithWarnings, so callers
// can log them.
//
// The package must not start processes, touch systemd, nginx or
// PostgreSQL, or decide where bundles live: callers pass paths in.
package bundle
