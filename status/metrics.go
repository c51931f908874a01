package status

import (
	"bufio"
	"fmt"
	"net/http"
	"sort"
	"strconv"
)

// metrics writes the Prometheus text exposition format (version 0.0.4)
// by hand: a handful of series do not need a client library.
func (s *Server) metrics(w http.ResponseWriter, r *http.Request) {
	m := s.o.Core.Metrics()
	states := map[string]int{}
	for _, st := range States {
		states[st] = 0
	}
	apps := s.apps(r.Context(), 0)
	for _, a := range apps {
		states[a.State]++
	}
	var reloads, switches uint64
	if s.o.Reloads != nil {
		reloads = s.o.Reloads()
	}
	if s.o.MapSwitches != nil {
		switches = s.o.MapSwitches()
	}

	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	b := bufio.NewWriter(w)
	defer b.Flush()
	header := func(name, typ, help string) {
		fmt.Fprintf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
	}

	header("keter_deploys_total", "counter", "Finished deploys by result since keter started.")
	for _, r := range sortedKeys(m.Deploys) {
		fmt.Fprintf(b, "keter_deploys_total{result=%q} %d\n", r, m.Deploys[r])
	}
	header("keter_deploy_duration_seconds", "histogram", "Time from picking up a bundle to its version being live, or refused.")
	for i, le := range m.Duration.Bounds {
		fmt.Fprintf(b, "keter_deploy_duration_seconds_bucket{le=%q} %d\n", float(le), m.Duration.Counts[i])
	}
	fmt.Fprintf(b, "keter_deploy_duration_seconds_bucket{le=\"+Inf\"} %d\n", m.Duration.Count)
	fmt.Fprintf(b, "keter_deploy_duration_seconds_sum %s\n", float(m.Duration.Sum))
	fmt.Fprintf(b, "keter_deploy_duration_seconds_count %d\n", m.Duration.Count)
	header("keter_apps", "gauge", "Apps by state.")
	for _, st := range sortedKeys(states) {
		fmt.Fprintf(b, "keter_apps{state=%q} %d\n", st, states[st])
	}
	writeMaintenance(b, apps, header)
	writeCanary(b, apps, header)
	writeUsage(b, apps, header)
	writeJobs(b, apps, header)
	header("keter_nginx_reloads_total", "counter", "nginx reloads keter asked for since it started.")
	fmt.Fprintf(b, "keter_nginx_reloads_total %d\n", reloads)
	header("keter_port_map_switches_total", "counter", "Changes keter made to its nftables port map since it started.")
	fmt.Fprintf(b, "keter_port_map_switches_total %d\n", switches)
	if certs := s.certs(); len(certs) > 0 {
		header("keter_certificate_expiry_timestamp_seconds", "gauge", "When each host's certificate from the ACME CA expires (Unix time); hosts still waiting for one are absent.")
		for _, c := range certs {
			if !c.NotAfter.IsZero() {
				fmt.Fprintf(b, "keter_certificate_expiry_timestamp_seconds{host=%q} %d\n", c.Host, c.NotAfter.Unix())
			}
		}
	}
	writeCertStorage(b, s.certStorage(), header)
	header("keter_ready", "gauge", "1 once keter finished its first reconcile.")
	ready := 0
	if s.ready.Load() {
		ready = 1
	}
	fmt.Fprintf(b, "keter_ready %d\n", ready)
	header("keter_build_info", "gauge", "keter's version.")
	fmt.Fprintf(b, "keter_build_info{version=%q} 1\n", s.o.Version)
}

func float(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
