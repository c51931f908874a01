// Package dbus is the only code in keter that talks to systemd. It starts
// transient units and waits for their jobs, stops, reloads and lists them,
// follows their state changes and reads their journal. It connects as root
// through systemd's private socket (/run/systemd/private), so it needs no
// D-Bus daemon, and redials once when that connection drops (systemd
// re-executing, for example).
//
// It decides nothing about apps: unit names and properties come from
// package unitgen, and the core decides what to start and stop.
package dbus
