package unitgen

import (
	sddbus "github.com/coreos/go-systemd/v22/dbus"
	godbus "github.com/godbus/dbus/v5"
)

// filter is the D-Bus shape (bas) of RestrictAddressFamilies and
// SystemCallFilter: Allow false means a deny list.
type filter struct {
	Allow bool
	List  []string
}

func prop(name string, v any) sddbus.Property {
	return sddbus.Property{Name: name, Value: godbus.MakeVariant(v)}
}

// hardening is the sandbox every app unit gets. What a web app needs stays
// open: IPv4/IPv6/Unix sockets, outgoing connections, reading the system,
// writing its StateDirectory. denyWX turns on MemoryDenyWriteExecute, which
// JIT runtimes (V8, the JVM, PCRE's JIT, LuaJIT, ...) cannot run under, so
// it is a per-stanza opt-in.
//
// ProcSubset=pid is left out on purpose: runtimes read /proc/meminfo and
// /proc/cpuinfo to size heaps and thread pools.
func hardening(denyWX bool) []sddbus.Property {
	return []sddbus.Property{
		prop("NoNewPrivileges", true),
		prop("CapabilityBoundingSet", uint64(0)),
		prop("AmbientCapabilities", uint64(0)),
		prop("ProtectSystem", "strict"),
		prop("ProtectHome", "yes"),
		prop("PrivateTmp", true),
		prop("PrivateDevices", true),
		prop("PrivateUsers", true),
		prop("ProtectKernelTunables", true),
		prop("ProtectKernelModules", true),
		prop("ProtectKernelLogs", true),
		prop("ProtectControlGroups", true),
		prop("ProtectClock", true),
		prop("ProtectHostname", true),
		prop("ProtectProc", "invisible"),
		prop("RestrictAddressFamilies", filter{true, []string{"AF_UNIX", "AF_INET", "AF_INET6"}}),
		prop("RestrictNamespaces", uint64(0)), // no namespaces may be created
		prop("RestrictRealtime", true),
		prop("RestrictSUIDSGID", true),
		prop("LockPersonality", true),
		prop("MemoryDenyWriteExecute", denyWX),
		prop("RemoveIPC", true),
		prop("SystemCallArchitectures", []string{"native"}),
		prop("SystemCallFilter", filter{true, []string{"@system-service"}}),
		prop("SystemCallFilter", filter{false, []string{"@privileged", "@resources"}}),
		prop("SystemCallErrorNumber", int32(1)), // EPERM instead of killing the app
		prop("UMask", uint32(0o077)),
	}
}
