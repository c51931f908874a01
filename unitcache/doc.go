// Package unitcache keeps the state and usage figures of keter's app units
// in memory, so that `keter status`, the API and /metrics answer from it
// instead of asking systemd about every unit at every request (at 1000
// apps that was one D-Bus GetAll per unit per request).
//
// States come from systemd's signals (through the Source's Subscribe) as
// they change. Memory, CPU, tasks and IO are read from each running
// unit's cgroup v2 files every Interval; a unit whose state changed is
// read again in full from systemd (its new run's start time and figures)
// within a second; and every FullEvery the whole list is read from
// systemd again, which brings the IP figures (systemd counts those in BPF,
// only readable over D-Bus) and corrects anything a lost signal left wrong.
//
// It changes nothing in systemd and knows nothing of apps or versions.
package unitcache
