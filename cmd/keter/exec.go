package main

import (
	"context"
	"errors"
	"flag"
	"log/slog"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"sync"

	"github.com/keter-systemd/keter/app"
	"github.com/keter-systemd/keter/bundle"
	"github.com/keter-systemd/keter/config"
	"github.com/keter-systemd/keter/execsock"
)

func init() {
	register(command{"exec", "APP -- CMD...", "run a one-off command in the app's live version", cmdExec})
}

const execAbout = `Runs CMD with ARGS once in APP's live version: in its folder, as its user, in
its sandbox, with its environment, as a systemd unit of its own (the running
app is not touched). CMD's stdin, stdout and stderr are this command's own,
handed to keter over its socket; the exit status is CMD's (128+N when a
signal N killed it; 130 after Ctrl-C, which stops CMD). A bare CMD is looked
up in PATH, a relative one in the app's folder. Root and members of the
deploy group may run it; the journal records who ran what and how it ended
(keter logs APP).`

func cmdExec(ctx context.Context, args []string) int {
	fs := newFlags("exec", "[-c CONFIG] APP -- CMD [ARGS...]", execAbout)
	cfgPath := configFlag(fs)
	var pos, argv []string
	if i := slices.Index(args, "--"); i >= 0 {
		var code int
		var ok bool
		if pos, code, ok = parseArgs(fs, args[:i], 1, 1); !ok {
			return code
		}
		argv = args[i+1:]
	} else {
		// Without "--", flags go first and all after APP is the command's.
		err := fs.Parse(args)
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(os.Stdout)
			fs.Usage()
			return exitOK
		}
		if err != nil {
			return usageError(fs, err.Error())
		}
		if fs.NArg() == 0 {
			return usageError(fs, "no app: keter exec APP -- CMD [ARGS...]")
		}
		pos, argv = fs.Args()[:1], fs.Args()[1:]
	}
	if len(argv) == 0 || argv[0] == "" {
		return usageError(fs, "no command: keter exec APP -- CMD [ARGS...]")
	}
	if err := bundle.ValidAppName(pos[0]); err != nil {
		return usageError(fs, err.Error())
	}
	cfg, _, err := config.Load(*cfgPath)
	if err != nil {
		return fail("%v", err)
	}
	ctx, signals, done := execSignals(ctx)
	defer done()
	out, err := execsock.RunSignals(ctx, execSocket(cfg), execsock.Request{App: pos[0], Argv: argv}, os.Stdin, os.Stdout, os.Stderr, nil, signals)
	if errors.Is(err, os.ErrNotExist) {
		return fail("%v (is keter running, and new enough for exec?)", err)
	}
	if err != nil {
		return fail("%v", err)
	}
	return out.ExitCode()
}

// execSocket is where keter takes exec requests: next to its CLI socket,
// with the same permissions.
func execSocket(cfg *config.Config) string {
	return filepath.Join(filepath.Dir(cfg.Status.Socket), "keter-exec.sock")
}

// execHandler runs exec requests in the apps' live versions.
func execHandler(mgr *app.Manager) execsock.Handler {
	return func(ctx context.Context, req execsock.Request, c execsock.Caller, files [3]*os.File, started func(string), signals <-chan int) (execsock.Outcome, error) {
		fds := []int{int(files[0].Fd()), int(files[1].Fd()), int(files[2].Fd())}
		st, err := mgr.Exec(ctx, app.ExecRequest{App: req.App, Argv: req.Argv, Stdio: fds, User: userOf(c.UID), Signals: signals}, started)
		if err != nil {
			return execsock.Outcome{}, err
		}
		stopped := ctx.Err() != nil
		switch {
		case stopped:
			return execsock.Outcome{Stopped: true}, nil
		case st.ExecMainCode == 2 || st.ExecMainCode == 3: // killed, dumped
			return execsock.Outcome{Signal: int(st.ExecMainStatus)}, nil
		}
		return execsock.Outcome{Status: int(st.ExecMainStatus)}, nil
	}
}

// userOf names a uid for the journal: "1001/deploy".
func userOf(uid uint32) string {
	id := strconv.FormatUint(uint64(uid), 10)
	if u, err := user.LookupId(id); err == nil {
		return id + "/" + u.Username
	}
	return id
}

// serveExec opens the exec socket and serves it until ctx ends; served
// waits for it, and for the commands it runs to be stopped.
func serveExec(ctx context.Context, cfg *config.Config, gid int, mgr *app.Manager, log *slog.Logger, served *sync.WaitGroup) error {
	s, err := execsock.Listen(execSocket(cfg), gid, log)
	if err != nil {
		return err
	}
	served.Add(1)
	go func() {
		defer served.Done()
		if err := s.Serve(ctx, execHandler(mgr)); err != nil {
			log.Error("exec socket stopped", "err", err)
		}
	}()
	return nil
}
