package nginx

import (
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
)

var versionRE = regexp.MustCompile(`nginx/(\d+)\.(\d+)\.(\d+)`)

// MapSupport says whether bin can serve behind a PortMap: mapped upstreams
// need keepalive_time, which nginx has since 1.19.10 (Debian 12 ships
// 1.22; Ubuntu 20.04's 1.18 lacks it).
func MapSupport(ctx context.Context, bin string) error {
	out, err := exec.CommandContext(ctx, bin, "-v").CombinedOutput()
	if err != nil {
		return fmt.Errorf("asking %s its version: %w", bin, err)
	}
	return mapSupport(string(out))
}

func mapSupport(versionOutput string) error {
	v, err := parseVersion(versionOutput)
	if err != nil {
		return err
	}
	if v[0] > 1 || v[0] == 1 && (v[1] > 19 || v[1] == 19 && v[2] >= 10) {
		return nil
	}
	return fmt.Errorf("nginx %d.%d.%d has no upstream keepalive_time (1.19.10 or newer has)", v[0], v[1], v[2])
}

// http2On says whether bin wants `http2 on` (nginx 1.25.1 and newer)
// rather than `listen ... http2`; an nginx that does not answer gets the
// old spelling, which every version since 1.9.5 reads.
func http2On(ctx context.Context, bin string) bool {
	out, err := exec.CommandContext(ctx, bin, "-v").CombinedOutput()
	if err != nil {
		return false
	}
	v, err := parseVersion(string(out))
	return err == nil && atLeast(v, 1, 25, 1)
}

func parseVersion(versionOutput string) ([3]int, error) {
	var v [3]int
	m := versionRE.FindStringSubmatch(versionOutput)
	if m == nil {
		return v, fmt.Errorf("no version in nginx -v output %q", versionOutput)
	}
	for i := range v {
		v[i], _ = strconv.Atoi(m[i+1])
	}
	return v, nil
}

func atLeast(v [3]int, major, minor, patch int) bool {
	return v[0] > major || v[0] == major && (v[1] > minor || v[1] == minor && v[2] >= patch)
}
