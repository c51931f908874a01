package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/keter-systemd/keter/bundle"
)

func cmdBundle(ctx context.Context, args []string) int {
	fs := newFlags("bundle", "[-o NAME.keter] [-zstd] DIR",
		"Validates DIR/config/keter.yaml and builds the bundle NAME.keter from DIR\n(default name: the folder's name, in the current folder). The bundle's\nfile name is the app's name once deployed.")
	out := fs.String("o", "", "bundle to write")
	useZstd := fs.Bool("zstd", false, "compress with zstd, not gzip: keter unpacks it about four times faster (the Haskell Keter cannot read it)")
	pos, code, ok := parseArgs(fs, args, 1, 1)
	if !ok {
		return code
	}
	dir := pos[0]
	if *out == "" {
		abs, err := filepath.Abs(dir)
		if err != nil {
			return fail("%v", err)
		}
		*out = filepath.Base(abs) + ".keter"
	}
	cfg, warns, err := bundle.LoadWithWarnings(dir)
	printWarnings(dir, warns)
	if err != nil {
		return fail("%s is not a valid app folder:\n%s", dir, indent(err.Error()))
	}
	compression := bundle.Gzip
	if *useZstd {
		compression = bundle.Zstd
	}
	if err := bundle.BuildWith(dir, *out, compression); err != nil {
		return fail("%v", err)
	}
	digest, err := bundle.Digest(*out)
	if err != nil {
		return fail("%v", err)
	}
	fmt.Printf("wrote %s: %s (sha256 %s)\n", *out, describeApp(cfg), digest[:12])
	return exitOK
}

func cmdCheck(ctx context.Context, args []string) int {
	fs := newFlags("check", "FILE.keter",
		"Unpacks the bundle into a temporary folder and validates it as keter would\nwhen deploying it, printing every problem found.")
	pos, code, ok := parseArgs(fs, args, 1, 1)
	if !ok {
		return code
	}
	file := pos[0]
	var problems []string
	if _, err := bundle.AppName(file); err != nil {
		problems = append(problems, err.Error())
	}
	cfg, warns, err := bundle.CheckWithWarnings(ctx, file)
	printWarnings(file, warns)
	if err != nil {
		problems = append(problems, err.Error())
	}
	if len(problems) > 0 {
		return fail("%s is not a valid bundle:\n%s", file, indent(strings.Join(problems, "\n")))
	}
	fmt.Printf("%s: ok: %s\n", file, describeApp(cfg))
	return exitOK
}

func printWarnings(what string, warns []string) {
	for _, w := range warns {
		fmt.Fprintf(os.Stderr, "keter: warning: %s: %s\n", what, w)
	}
}

func describeApp(c *bundle.AppConfig) string {
	hosts := c.Hosts()
	if len(hosts) == 0 {
		return fmt.Sprintf("%d stanzas", len(c.Stanzas))
	}
	return fmt.Sprintf("%d stanzas, hosts %s", len(c.Stanzas), strings.Join(hosts, ", "))
}
