// Package debtest runs scripts/test-deb.sh under `go test`, so CI builds,
// lints, installs, runs, upgrades, removes and purges the Debian package.
// It holds no code of its own: the packaging lives in debian/ and
// packaging/, the steps in the script.
package debtest
