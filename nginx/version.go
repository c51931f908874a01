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
	m := versionRE.FindStringSubmatch(versionOutput)
	if m == nil {
		return fmt.Errorf("no version in nginx -v output %q", versionOutput)
	}
	var v [3]int
	for i := range v {
		v[i], _ = strconv.Atoi(m[i+1])
	}
	if v[0] > 1 || v[0] == 1 && (v[1] > 19 || v[1] == 19 && v[2] >= 10) {
		return nil
	}
	return fmt.Errorf("nginx %d.%d.%d has no upstream keepalive_time (1.19.10 or newer has)", v[0], v[1], v[2])
}
