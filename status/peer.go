package status

import (
	"context"
	"errors"
	"net"
	"net/http"

	"golang.org/x/sys/unix"
)

type peerKey struct{}

// withPeer keeps the uid of the process at the other end of a unix
// socket connection (SO_PEERCRED) in the request context.
func withPeer(ctx context.Context, c net.Conn) context.Context {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return ctx
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return ctx
	}
	var cred *unix.Ucred
	raw.Control(func(fd uintptr) {
		cred, err = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	})
	if err != nil || cred == nil {
		return ctx
	}
	return context.WithValue(ctx, peerKey{}, cred.Uid)
}

// errRootOnly is what a member of the operators' group gets for what only
// root may do.
var errRootOnly = errors.New("only root may do this (members of keter's group may deploy, roll back and read the status)")

// rootOnly lets only root's processes through.
func rootOnly(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if uid, ok := r.Context().Value(peerKey{}).(uint32); !ok || uid != 0 {
			writeError(w, http.StatusForbidden, errRootOnly)
			return
		}
		h(w, r)
	}
}
