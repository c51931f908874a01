package unitgen

import (
	_ "embed"
	"path/filepath"
	"strings"

	sddbus "github.com/coreos/go-systemd/v22/dbus"

	"github.com/keter-systemd/keter/config"
)

// msRec is MS_REC: BindPaths mounts the folder with what is below it.
const msRec = 16384

// tmpfsMount is the D-Bus shape (ss) of one TemporaryFileSystem entry.
type tmpfsMount struct {
	Path, Options string
}

// bindMount is the D-Bus shape (ssbt) of one BindPaths entry.
type bindMount struct {
	Source, Destination string
	IgnoreMissing       bool
	Flags               uint64
}

// execEx is the D-Bus shape (sasas) of ExecStartEx, ExecStartPreEx and
// ExecStopPostEx.
type execEx struct {
	Path  string
	Args  []string
	Flags []string
}

// isolation keeps an app out of every other app's files and keter's: the
// keter root is replaced by an empty read-only tmpfs in the unit's mount
// namespace, and only the version's own folder is bound back, writable
// (as under the Haskell Keter, where apps write e.g. static/tmp). Mounts,
// not file modes, so it holds when `setuid` runs every app as one user.
// The hooks folder (public scripts) is bound back read-only. Keter's files
// outside the root (a moved CLI socket, system mode's
// nginx include) are made inaccessible too.
func isolation(in Input) []sddbus.Property {
	var ps []sddbus.Property
	root := ""
	if in.Global != nil && in.Global.Root != "" {
		root = filepath.Clean(in.Global.Root)
	}
	if root != "" && root != "/" && within(in.Dir, root) {
		ps = append(ps, prop("TemporaryFileSystem", []tmpfsMount{{root, "ro"}}))
		// The mount namespace holds for the unit's privileged hooks too.
		hooks := in.Global.Hooks()
		ps = append(ps, prop("BindReadOnlyPaths", []bindMount{{hooks, hooks, false, msRec}}))
	}
	ps = append(ps, prop("BindPaths", []bindMount{{in.Dir, in.Dir, false, msRec}}))
	var hide []string
	if g := in.Global; g != nil {
		if g.Status.Socket != "" && !within(g.Status.Socket, root) {
			hide = append(hide, "-"+filepath.Dir(g.Status.Socket))
		}
		if g.Nginx.Mode == config.ModeSystem && g.Nginx.IncludeFile != "" && !within(g.Nginx.IncludeFile, root) {
			hide = append(hide, "-"+g.Nginx.IncludeFile)
		}
	}
	if len(hide) > 0 {
		ps = append(ps, prop("InaccessiblePaths", hide))
	}
	return ps
}

// OwnFolderScript gives the version folder to the app's user before each
// start (own-folder.sh); keter writes it into its hooks folder as
// OwnFolderFile.
//
//go:embed own-folder.sh
var OwnFolderScript string

// OwnFolderFile is the own-folder script's name in the hooks folder.
const OwnFolderFile = "own-folder"

// ownFolder runs the own-folder script with full privileges ("+") before
// each start.
func ownFolder(hooks, dir, stateDir string) sddbus.Property {
	return prop("ExecStartPreEx", []execEx{{"/bin/sh", []string{"/bin/sh", filepath.Join(hooks, OwnFolderFile), dir, stateDir}, []string{"privileged"}}})
}

// stopHook runs argv with full privileges after every stop of the unit
// (automatic restarts too); a failure of it is only logged by systemd.
func stopHook(argv []string) sddbus.Property {
	return prop("ExecStopPostEx", []execEx{{argv[0], argv, []string{"privileged", "ignore-failure"}}})
}

// within reports whether path is root or below it.
func within(path, root string) bool {
	if root == "" {
		return false
	}
	rel, err := filepath.Rel(root, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}
