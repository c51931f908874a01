package unitgen

import sddbus "github.com/coreos/go-systemd/v22/dbus"

// accounting asks systemd to count what each app unit uses, so keter can
// report it (package usage). systemd counts what the kernel lets it: on a
// cgroup v2 host all of these; in hybrid mode IO is never counted and CPU
// only where cpuacct is mounted with cpu. IPAccounting needs cgroup BPF;
// without it systemd starts the unit anyway and reports no traffic.
func accounting() []sddbus.Property {
	return []sddbus.Property{
		prop("MemoryAccounting", true),
		prop("CPUAccounting", true),
		prop("TasksAccounting", true),
		prop("IOAccounting", true),
		prop("IPAccounting", true),
	}
}
