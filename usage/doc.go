// Package usage reports what each app's units use, from systemd's own
// accounting: memory, CPU time, tasks, IO and IP traffic as systemd counts
// them for every keter app unit, and keter's running totals per app and
// stanza. systemd starts a unit's counters again at every start (automatic
// restarts too) and a transient unit vanishes when it stops, so the
// Tracker follows each unit's runs by InvocationID, adds a finished run's
// final figures (systemd's "Consumed …" journal record, or the last ones
// read) to the live runs' figures, and so never lets a total go down while
// keter runs. Totals start at zero when keter starts.
//
// It reads systemd through the Units interface and changes nothing; it
// knows nothing of versions, hosts or the proxy.
package usage
