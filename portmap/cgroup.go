package portmap

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/keter-systemd/keter/internal/cgroup"
)

// sysCgroup is where nft looks a cgroupv2 path up.
const sysCgroup = "/sys/fs/cgroup"

// cgroupMatch turns a cgroup v2 path into nft's path (relative to
// /sys/fs/cgroup, so "unified/..." on a hybrid host) and its level.
func cgroupMatch(cg string) (path string, level int, err error) {
	cg = strings.Trim(filepath.Clean("/"+cg), "/")
	if cg == "" {
		return "", 0, errors.New("nginx runs in the root cgroup: there is nothing to tell its connections apart by")
	}
	mount, err := cgroup.Mount()
	if err != nil {
		return "", 0, err
	}
	rel, err := filepath.Rel(sysCgroup, mount)
	if err != nil || strings.HasPrefix(rel, "..") {
		return "", 0, fmt.Errorf("cgroup2 is mounted at %s, outside %s where nft looks", mount, sysCgroup)
	}
	path = cg
	if rel != "." {
		path = rel + "/" + cg
	}
	return path, strings.Count(cg, "/") + 1, nil
}
