package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// command is one subcommand; run returns the process exit code.
type command struct {
	name, args, summary string
	run                 func(ctx context.Context, args []string) int
}

var commands []command

func register(c command) { commands = append(commands, c) }

func init() {
	register(command{"run", "CONFIG", "run the daemon (also: keter CONFIG)", cmdRun})
	register(command{"version", "", "print the version", func(context.Context, []string) int {
		fmt.Println(version)
		return 0
	}})
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "keter %s: deploy web apps as systemd units behind nginx\n\nUsage:\n  keter CONFIG\n", version)
	for _, c := range commands {
		fmt.Fprintf(w, "  keter %-11s %-14s %s\n", c.name, c.args, c.summary)
	}
	fmt.Fprintln(w, "\nRun 'keter COMMAND --help' for a command's options.")
}

func run(args []string) int {
	if len(args) == 0 {
		usage(os.Stderr)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	switch args[0] {
	case "-h", "--help", "help":
		usage(os.Stdout)
		return 0
	case "--version", "-v":
		fmt.Println(version)
		return 0
	}
	for _, c := range commands {
		if c.name == args[0] {
			return c.run(ctx, args[1:])
		}
	}
	// Like the Haskell Keter: `keter /path/to/keter-config.yaml`.
	if fi, err := os.Stat(args[0]); err == nil && !fi.IsDir() {
		return cmdRun(ctx, args)
	}
	fmt.Fprintf(os.Stderr, "keter: unknown command or config file %q\n\n", args[0])
	usage(os.Stderr)
	return 2
}
