package status

import (
	"context"
	"net"
	"net/netip"
	"os/user"
	"slices"
	"strconv"
	"strings"
)

// Apps' log lines (recent lines and a failed deploy's last lines) are no
// easier to read here than in journald, which shows other users' logs
// only to root and the members of adm and systemd-journal. The page, the
// API and /metrics show everything else to everyone they let in; the log
// lines are left out, with the reason, for callers who may not read them.
// Nothing here shows an app's environment (its env: values) to anyone.

// JournalGroups are the groups journald shows every user's logs to.
var JournalGroups = []string{"adm", "systemd-journal"}

// logPolicy decides who reads log lines over TCP. Callers over loopback
// are judged by their user: root and members (primary or supplementary,
// from the group database) of the deploy group or of JournalGroups. A
// connection to a non-loopback address could come from any host, so
// whoever made it, remote decides.
type logPolicy struct {
	deployGroup string // "" when keter has none
	remote      bool
}

// groups are the names of the groups whose members read log lines.
func (p logPolicy) groups() []string {
	if p.deployGroup == "" || slices.Contains(JournalGroups, p.deployGroup) {
		return JournalGroups
	}
	return append([]string{p.deployGroup}, JournalGroups...)
}

// hidden is why c may not read log lines, "" when it may.
func (p logPolicy) hidden(c caller) string {
	if !c.local || c.network {
		if p.remote {
			return ""
		}
		return "log lines are not shown to other hosts: keter cannot tell who is asking (status.remote-logs turns them on)"
	}
	if c.uid == 0 || p.member(c.uid) {
		return ""
	}
	g := p.groups()
	return "log lines are shown to root and members of " + strings.Join(g[:len(g)-1], ", ") + " or " + g[len(g)-1]
}

// member reports whether uid is in one of the groups. The database is
// read on every call: a user added to a group reads logs at once.
func (p logPolicy) member(uid uint32) bool {
	u, err := user.LookupId(strconv.FormatUint(uint64(uid), 10))
	if err != nil {
		return false
	}
	gids, err := u.GroupIds()
	if err != nil {
		return false
	}
	for _, name := range p.groups() {
		g, err := user.LookupGroup(name)
		if err == nil && slices.Contains(gids, g.Gid) {
			return true
		}
	}
	return false
}

type logsKey struct{}

// withLogs records in ctx why the request's caller may not read log
// lines ("" when it may).
func withLogs(ctx context.Context, hidden string) context.Context {
	return context.WithValue(ctx, logsKey{}, hidden)
}

// logsHidden is why the request's caller may not read log lines, "" when
// it may. A request nobody judged reads none.
func logsHidden(ctx context.Context) string {
	hidden, ok := ctx.Value(logsKey{}).(string)
	if !ok {
		return "keter cannot tell who is asking"
	}
	return hidden
}

// isLoopback reports whether a listener's address is a loopback one.
func isLoopback(a net.Addr) bool {
	ap, err := netip.ParseAddrPort(a.String())
	return err == nil && ap.Addr().Unmap().IsLoopback()
}
