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

// appGuard refuses the page, the API and /metrics to keter's apps, and
// decides who of the rest reads the apps' log lines. A client on this
// host is looked up by its socket: when it belongs to a unit under the
// apps' slice, it gets 403; otherwise its user decides (see logPolicy).
// A client keter does not find on this host is on another one (or in
// another network namespace): it gets the page, with log lines only when
// the operator turned that on.
type appGuard struct {
	slice string // cgroup v2 path of the apps' slice, e.g. keter.slice
	logs  logPolicy

	mu      sync.Mutex
	ids     map[uint64]bool // cgroup ids under slice
	idsRead time.Time
}

func (g *appGuard) wrap(next http.Handler, log func(msg string, args ...any)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := g.caller(r)
		if err != nil {
			log("status page: cannot tell who is asking; refusing", "remote", r.RemoteAddr, "err", err)
			http.Error(w, "keter cannot tell who is asking", http.StatusForbidden)
			return
		}
		if c.app {
			http.Error(w, "keter's status is not for apps", http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, r.WithContext(withLogs(r.Context(), g.logs.hidden(c))))
	})
}

// caller is who is at the other end of a connection to the page.
type caller struct {
	local bool // a socket of this host, so uid and app are known
	// network: the connection came to a non-loopback address, where
	// another host could have made it just as well.
	network bool
	uid     uint32 // the user that made the client's socket
	app     bool   // a process of an app unit
}

// caller looks the request's client up among this host's sockets.
func (g *appGuard) caller(r *http.Request) (caller, error) {
	remote, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return caller{}, err
	}
	local, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	if !ok {
		return caller{}, nil
	}
	lap, err := netip.ParseAddrPort(local.String())
	if err != nil {
		return caller{}, err
	}
	family := uint8(unix.AF_INET)
	if remote.Addr().Unmap().Is6() {
		family = unix.AF_INET6
	}
	socks, err := sockdiag.Dump(family, 1<<sockdiag.StateEstablished)
	if err != nil {
		return caller{}, err
	}
	for _, s := range socks {
		if s.Local == remote && s.Remote == lap {
			return caller{local: true, network: !lap.Addr().Unmap().IsLoopback(), uid: s.UID, app: g.isApp(s.CgroupID)}, nil
		}
	}
	return caller{network: true}, nil // not a socket of this host: a remote client
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
