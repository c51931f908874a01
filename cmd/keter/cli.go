package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/keter-systemd/keter/config"
	"github.com/keter-systemd/keter/status"
)

// defaultConfig is where the Debian package installs keter-config.yaml.
const defaultConfig = "/etc/keter/keter-config.yaml"

// Exit codes scripts can rely on.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// newFlags makes a subcommand's flag set; about is the --help text.
func newFlags(name, args, about string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "Usage: keter %s %s\n\n%s\n", name, args, about)
		if hasFlags(fs) {
			fmt.Fprintln(w, "\nOptions:")
			fs.PrintDefaults()
		}
		fmt.Fprintln(w, "\nExit status: 0 success, 1 failure, 2 usage error.")
	}
	return fs
}

func hasFlags(fs *flag.FlagSet) (yes bool) {
	fs.VisitAll(func(*flag.Flag) { yes = true })
	return yes
}

func configFlag(fs *flag.FlagSet) *string {
	def := defaultConfig
	if env := os.Getenv("KETER_CONFIG"); env != "" {
		def = env // e.g. set by sshd for the commands --hosts runs
	}
	return fs.String("c", def, "keter-config.yaml of the running keter (to find its root and socket; default $KETER_CONFIG if set)")
}

// parseArgs parses flags anywhere among the arguments and checks the
// number of positional ones. ok false means: return code.
func parseArgs(fs *flag.FlagSet, args []string, minPos, maxPos int) (pos []string, code int, ok bool) {
	for {
		err := fs.Parse(args)
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(os.Stdout)
			fs.Usage()
			return nil, exitOK, false
		}
		if err != nil {
			return nil, usageError(fs, err.Error()), false
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(pos) < minPos || len(pos) > maxPos {
		return nil, usageError(fs, "wrong number of arguments"), false
	}
	return pos, exitOK, true
}

func usageError(fs *flag.FlagSet, msg string) int {
	fmt.Fprintf(os.Stderr, "keter %s: %s\n\n", fs.Name(), msg)
	fs.SetOutput(os.Stderr)
	fs.Usage()
	return exitUsage
}

// fail prints an error and returns the failure exit code.
func fail(format string, args ...any) int {
	fmt.Fprintf(os.Stderr, "keter: "+format+"\n", args...)
	return exitFailure
}

// connect loads the config (for its root and socket) and makes a client.
func connect(path string) (*config.Config, *status.Client, error) {
	cfg, _, err := config.Load(path)
	if err != nil {
		return nil, nil, err
	}
	return cfg, status.NewClient(cfg.Status.Socket), nil
}
