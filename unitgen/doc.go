// Package unitgen turns one webapp or background stanza of a bundle into a
// transient systemd service: its name, its D-Bus properties and the
// contents of its root-only environment file. It is pure: it reads no files,
// talks to no bus and never writes anything; package dbus starts the unit and
// the core writes the environment file.
//
// # Unit names
//
// Every unit that runs app code is named
//
//	keter-app-APP-VERSION-STANZA.service
//
// where STANZA is the stanza's kind and its index in the bundle ("web0",
// "bg1"), followed by ".N" for instance N of a webapp stanza that runs
// several ("web0.2"; `instances: N`). APP keeps the characters [A-Za-z0-9._-]; VERSION and STANZA keep
// [A-Za-z0-9._]. Any other byte, and "-" inside VERSION or STANZA, is
// written as \xNN like systemd-escape does, so the name is always a valid
// unit name and reads back unambiguously from the right (ParseUnitName).
// Names longer than systemd's 255-character limit are refused. All app
// units run in keter.slice, so `systemctl status keter.slice` shows them and
// one slice drop-in caps them together.
//
// A bundle's release step runs as keter-app-APP-VERSION-release.service
// (see Release): a oneshot in the sandbox of the stanza it borrows from.
//
// Because APP may itself contain "-", the prefix "keter-app-foo-" also
// matches units of an app named "foo-bar": select an app's units by the Meta
// read back from them, not by name prefix alone.
//
// # Metadata
//
// A restarted keter recognises its units by their Description
// ("keter app=APP version=VERSION stanza=STANZA [instance=N]", see
// ParseMeta), by their name (ParseUnitName), and journald carries
// KETER_APP, KETER_VERSION, KETER_STANZA and KETER_INSTANCE (1 for a
// stanza's only unit) on every line the app logs (`journalctl KETER_APP=APP`).
//
// # Environment and secrets
//
// Build computes the app's final environment in Go with Keter's precedence
// (highest first), with the operator's layer (`keter env set`, ours) on
// top: operator > stanza env > forward-env > plugin variables > global env
// > PORT and the port-env-vars names > APPROOT. The operator may not set
// PORT, APPROOT or a port-env-vars name (CheckOperatorVar). Each final variable goes to
// exactly one place: values that came from the last two layers (port
// numbers and the public URL) go to the unit's Environment=, which anyone
// can read over D-Bus; every other value goes to Unit.Secrets, which the
// unit loads through EnvironmentFiles= from Unit.EnvFile.
//
// The caller's contract: before starting the unit, write Unit.Secrets to
// Unit.EnvFile as root with mode 0600 (temp file, fsync, rename) when
// EnvFile is not empty; delete the file when the version is removed. The
// file is not optional for systemd: a missing file fails the start.
//
// # Restart policy
//
// Webapps: Restart=always after RestartDelay (default 1 s, bundle
// `systemd: restart-delay-sec`), at most 5 starts within
// max(60 s, 10 × delay); a crash loop ends in the failed state with result
// start-limit-hit instead of spinning. Background stanzas follow Keter's
// `restart-count` and `restart-delay-seconds`: unlimited (-1) restarts
// forever; N > 0 allows N restarts (StartLimitBurst N+1 over an infinite
// interval) and the unit then ends failed; 0 means Restart=no. A delay of 0
// becomes systemd's minimum of 100 ms so nothing spins.
//
// # Stopping
//
// KillMode=control-group: SIGTERM to every process of the app, SIGKILL to
// what is left after the stop timeout (default 10 s, bundle
// `systemd: stop-timeout-sec`). Keter waits only 1 s; by the time keter
// stops a version its traffic has already moved, so a longer grace costs
// nothing and lets apps finish requests.
//
// # Sandbox
//
// Units run as a dynamic user with a stable name per app (so the per-app
// StateDirectory /var/lib/keter-app-APP survives version swaps), or as the
// user that keter-config's `setuid` names. The bundle folder is read-only
// to the app; STATE_DIRECTORY is its writable place. The hardening set and
// the per-stanza opt-outs are listed in hardening.go.
package unitgen
