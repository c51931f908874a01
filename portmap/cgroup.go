package portmap

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// sysCgroup is where nft looks a cgroupv2 path up.
const sysCgroup = "/sys/fs/cgroup"

// cgroupMatch turns a cgroup v2 path into nft's path (relative to
// /sys/fs/cgroup, so "unified/..." on a hybrid host) and its level.
func cgroupMatch(cgroup string) (path string, level int, err error) {
	cgroup = strings.Trim(filepath.Clean("/"+cgroup), "/")
	if cgroup == "" {
		return "", 0, errors.New("nginx runs in the root cgroup: there is nothing to tell its connections apart by")
	}
	mount, err := cgroup2Mount()
	if err != nil {
		return "", 0, err
	}
	rel, err := filepath.Rel(sysCgroup, mount)
	if err != nil || strings.HasPrefix(rel, "..") {
		return "", 0, fmt.Errorf("cgroup2 is mounted at %s, outside %s where nft looks", mount, sysCgroup)
	}
	path = cgroup
	if rel != "." {
		path = rel + "/" + cgroup
	}
	return path, strings.Count(cgroup, "/") + 1, nil
}

// cgroup2Mount is the cgroup v2 mount point: /sys/fs/cgroup on a unified
// host, /sys/fs/cgroup/unified on a hybrid one.
func cgroup2Mount() (string, error) {
	f, err := os.Open("/proc/self/mounts")
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fs := strings.Fields(sc.Text()); len(fs) >= 3 && fs[2] == "cgroup2" {
			return fs[1], nil
		}
	}
	return "", errors.New("no cgroup2 file system is mounted")
}

// CgroupOf is the cgroup v2 path of process pid.
func CgroupOf(pid int) (string, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if p, ok := strings.CutPrefix(sc.Text(), "0::"); ok {
			return p, nil
		}
	}
	return "", fmt.Errorf("process %d has no cgroup v2 path", pid)
}
