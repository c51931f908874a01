package fleet

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
)

// HostApps is what one host answered to status.
type HostApps struct {
	Host  string
	Apps  []AppVersion
	Error string // the host could not be asked
}

// ask runs one `keter remote ARGS` on every host at once and returns
// each host's answer.
func ask(ctx context.Context, o Options, args ...string) ([]Message, []error) {
	o.defaults()
	msgs := make([]Message, len(o.Hosts))
	errs := make([]error, len(o.Hosts))
	var wg sync.WaitGroup
	for i, h := range o.Hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := open(ctx, o.SSH, h, append([]string{"remote"}, args...)...)
			if err != nil {
				errs[i] = err
				return
			}
			msgs[i], errs[i] = s.next(ctx)
			s.close()
		}()
	}
	wg.Wait()
	return msgs, errs
}

// Status asks every host for its apps' live versions.
func Status(ctx context.Context, o Options) []HostApps {
	msgs, errs := ask(ctx, o, "status")
	out := make([]HostApps, len(o.Hosts))
	for i, h := range o.Hosts {
		out[i] = HostApps{Host: h, Apps: msgs[i].Apps}
		if errs[i] != nil {
			out[i].Error = errs[i].Error()
		}
	}
	return out
}

// PrintStatus writes one row per app and host, marking with DIFFERS the
// apps whose hosts do not all run the same version; app "" means all.
// It returns whether every host answered and agreed.
func PrintStatus(w io.Writer, hosts []HostApps, app string) bool {
	byApp := map[string]map[string]AppVersion{}
	ok := true
	for _, h := range hosts {
		for _, a := range h.Apps {
			if app != "" && a.Name != app {
				continue
			}
			if byApp[a.Name] == nil {
				byApp[a.Name] = map[string]AppVersion{}
			}
			byApp[a.Name][h.Host] = a
		}
	}
	if app != "" && byApp[app] == nil {
		byApp[app] = map[string]AppVersion{}
	}
	names := make([]string, 0, len(byApp))
	for n := range byApp {
		names = append(names, n)
	}
	sort.Strings(names)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "APP\tHOST\tVERSION\tBUNDLE\tNOTE")
	for _, n := range names {
		var digests []string
		for _, h := range hosts {
			if h.Error == "" {
				digests = append(digests, byApp[n][h.Host].Digest)
			}
		}
		slices.Sort(digests)
		differs := len(slices.Compact(digests)) > 1
		if differs {
			ok = false
		}
		for _, h := range hosts {
			a, found := byApp[n][h.Host]
			version, digest, note := "-", "-", ""
			switch {
			case h.Error != "":
				version, note = "?", "unreachable: "+firstLine(h.Error)
			case !found:
				note = "not on this host"
			case a.Version == "":
				note = "none live"
			default:
				version, digest = a.Version, a.Digest[:min(12, len(a.Digest))]
			}
			if found && a.Maintenance {
				note = strings.TrimSpace(note + " maintenance")
			}
			if differs && h.Error == "" {
				note = strings.TrimSpace("DIFFERS " + note)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", n, h.Host, version, digest, note)
		}
	}
	tw.Flush()
	for _, h := range hosts {
		if h.Error != "" {
			ok = false
			fmt.Fprintf(w, "%s: %s\n", h.Host, h.Error)
		}
	}
	return ok
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

// Maintenance turns maintenance on or off for app on every host at once
// and prints one line per host.
func Maintenance(ctx context.Context, o Options, app string, on bool, message string) error {
	o.defaults()
	args := []string{"maintenance", "off", app}
	if on {
		args = []string{"maintenance", "on", app, "--message", message}
	}
	msgs, errs := ask(ctx, o, args...)
	failed := 0
	for i, h := range o.Hosts {
		if errs[i] != nil {
			failed++
			fmt.Fprintf(o.Out, "%s: failed: %s\n", h, indentRest(errs[i].Error()))
			continue
		}
		fmt.Fprintf(o.Out, "%s: maintenance %s\n", h, msgs[i].Result)
	}
	if failed > 0 {
		return fmt.Errorf("%w: %d of %d hosts", ErrFailed, failed, len(o.Hosts))
	}
	return nil
}
