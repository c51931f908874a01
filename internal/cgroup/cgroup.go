// Package cgroup finds cgroup v2 paths and ids, on unified and on hybrid
// hosts (where cgroup2 is mounted at /sys/fs/cgroup/unified): the kernel
// names a socket's cgroup by id, the inode number of its folder.
package cgroup

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// ErrNoCgroup2 means no cgroup v2 file system is mounted.
var ErrNoCgroup2 = errors.New("no cgroup2 file system is mounted")

// Mount is where cgroup v2 is mounted.
func Mount() (string, error) {
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
	return "", ErrNoCgroup2
}

// ID is the id of the cgroup at path (as /system.slice/x.service).
func ID(path string) (uint64, error) {
	m, err := Mount()
	if err != nil {
		return 0, err
	}
	fi, err := os.Stat(filepath.Join(m, path))
	if err != nil {
		return 0, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, fmt.Errorf("no inode for cgroup %s", path)
	}
	return st.Ino, nil
}

// Of is the cgroup v2 path of process pid.
func Of(pid int) (string, error) {
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
