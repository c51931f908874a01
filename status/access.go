package status

import (
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/keter-systemd/keter/internal/cgroup"
	"github.com/keter-systemd/keter/internal/sockdiag"
)

// appGuard refuses the page, the API and /metrics to keter's apps: they
// show every app's log lines and layout. A client on this host is looked
// up by its socket: when it belongs to a unit under the apps' slice, it
// gets 403. Everyone else is let in (root, an operator's SSH tunnel,
// Prometheus under its own user, nginx).
type appGuard struct {
	slice string // cgroup v2 path of the apps' slice, e.g. keter.slice

	mu      sync.Mutex
	ids     map[uint64]bool // cgroup ids under slice
	idsRead time.Time
}

func (g *appGuard) wrap(next http.Handler, log func(msg string, args ...any)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		app, err := g.fromApp(r)
		if err != nil {
			log("status page: cannot tell who is asking; refusing", "remote", r.RemoteAddr, "err", err)
			http.Error(w, "keter cannot tell who is asking", http.StatusForbidden)
			return
		}
		if app {
			http.Error(w, "keter's status is not for apps", http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// fromApp reports whether the request comes from a process of an app unit.
func (g *appGuard) fromApp(r *http.Request) (bool, error) {
	remote, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return false, err
	}
	local, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	if !ok {
		return false, nil
	}
	lap, err := netip.ParseAddrPort(local.String())
	if err != nil {
		return false, err
	}
	family := uint8(unix.AF_INET)
	if remote.Addr().Unmap().Is6() {
		family = unix.AF_INET6
	}
	socks, err := sockdiag.Dump(family, 1<<sockdiag.StateEstablished)
	if err != nil {
		return false, err
	}
	for _, s := range socks {
		if s.Local == remote && s.Remote == lap {
			return g.isApp(s.CgroupID), nil
		}
	}
	return false, nil // not a socket of this host: a remote client
}

// isApp reports whether id is the apps' slice or a cgroup under it. The
// set is read again at most once a second, and at once when id is not in
// it (an app started since).
func (g *appGuard) isApp(id uint64) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ids[id] {
		return true
	}
	if time.Since(g.idsRead) < time.Second && g.ids != nil {
		return false
	}
	g.ids = cgroupIDs(g.slice)
	g.idsRead = time.Now()
	return g.ids[id]
}

// cgroupIDs are the ids (inode numbers on cgroup2) of slice and every
// cgroup below it.
func cgroupIDs(slice string) map[uint64]bool {
	ids := map[uint64]bool{}
	mount, err := cgroup.Mount()
	if err != nil {
		return ids
	}
	filepath.WalkDir(filepath.Join(mount, slice), func(path string, d os.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil
		}
		if fi, err := d.Info(); err == nil {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				ids[st.Ino] = true
			}
		}
		return nil
	})
	return ids
}
