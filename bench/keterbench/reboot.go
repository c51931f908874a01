package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/keter-systemd/keter/internal/freeport"
	"github.com/keter-systemd/keter/portmap"
)

// rebootResult: issue 27's reboot: keter.service enabled on a nested
// systemd with N apps live, powered off (every unit stopped, the nftables
// table deleted) and booted again.
type rebootResult struct {
	Apps       int
	Boot       time.Duration // boot → systemd up with keter READY
	AllServing time.Duration // boot → every app's first 200
	Intact     int           // apps started from their kept folder
	Unpacked   int           // deploys that unpacked a bundle after the boot
}

const goalReboot = 20 * time.Second

func benchReboot(ctx context.Context, e env, n int) (res rebootResult, err error) {
	res.Apps = n
	root := filepath.Join(e.base, "reboot")
	host := filepath.Join(e.base, "reboot-host")
	table := benchTable + "_reboot"
	for _, d := range []string{root, host} {
		if err := os.RemoveAll(d); err != nil {
			return res, err
		}
	}
	if err := os.MkdirAll(filepath.Join(root, "incoming"), 0o755); err != nil {
		return res, err
	}
	for _, d := range []string{e.base, root} {
		os.Chmod(d, 0o755)
	}
	port, err := freeport.Get()
	if err != nil {
		return res, err
	}
	statusPort, err := freeport.Get()
	if err != nil {
		return res, err
	}
	cfgPath := filepath.Join(root, "keter-config.yaml")
	cfg := fmt.Sprintf("root: %s\nlisteners:\n  - host: 127.0.0.1\n    port: %d\nnginx:\n  mode: managed\n  nft-table: %s\n"+
		"port-manager:\n  ranges:\n    - {from: %d, to: %d}\nstatus:\n  listen: 127.0.0.1:%d\n", root, port, table, appPortsFrom, appPortsTo, statusPort)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return res, err
	}
	unit, err := os.ReadFile("packaging/keter.service")
	if err != nil {
		return res, err
	}
	const packaged = "ExecStart=/usr/bin/keter /etc/keter/keter-config.yaml"
	if !strings.Contains(string(unit), packaged) {
		return res, fmt.Errorf("packaging/keter.service has no line %q", packaged)
	}
	unit = []byte(strings.Replace(string(unit), packaged, "ExecStart="+e.keterBin+" run "+cfgPath, 1))
	wants := filepath.Join(host, "units", "keter-test.target.wants")
	if err := os.MkdirAll(wants, 0o755); err != nil {
		return res, err
	}
	if err := os.WriteFile(filepath.Join(host, "units", "keter.service"), unit, 0o644); err != nil {
		return res, err
	}
	if err := os.Symlink("../keter.service", filepath.Join(wants, "keter.service")); err != nil {
		return res, err
	}
	up := func() error { _, err := command(ctx, "bash", "scripts/sandbox.sh", "up", host); return err }
	inside := func(args ...string) (string, error) {
		return command(ctx, "bash", append([]string{"scripts/sandbox.sh", "exec", host}, args...)...)
	}
	powerOff := func() {
		ctx := context.WithoutCancel(ctx)
		out, _ := command(ctx, "bash", "scripts/sandbox.sh", "exec", host, "systemctl", "list-units", "--all", "--plain", "--no-legend", "keter*")
		args := []string{"scripts/sandbox.sh", "exec", host, "systemctl", "stop"}
		for _, line := range strings.Split(out, "\n") {
			if f := strings.Fields(line); len(f) > 0 {
				args = append(args, f[0])
			}
		}
		command(ctx, "bash", args...)
		command(ctx, "bash", "scripts/sandbox.sh", "down", host)
		portmap.New(table).Remove(ctx)
	}
	defer func() {
		powerOff()
		os.RemoveAll(root)
		os.RemoveAll(host)
	}()
	if err := up(); err != nil {
		return res, fmt.Errorf("booting the nested host: %w", err)
	}
	k := &keter{root: root, port: port}
	if err := dropApps(ctx, k, e.app, n); err != nil {
		return res, err
	}
	e.logf("  %d apps serving on the nested host; powering it off", n)
	powerOff()

	t0 := time.Now()
	if err := up(); err != nil {
		return res, fmt.Errorf("booting the nested host again: %w", err)
	}
	res.Boot = time.Since(t0)
	pending := make([]string, n)
	for i := range pending {
		pending[i] = fmt.Sprintf("app%03d", i)
	}
	deadline := time.Now().Add(5 * time.Minute)
	var last time.Time
	for len(pending) > 0 {
		var still []string
		for _, name := range pending {
			code, body, err := get(ctx, port, name+".bench.test")
			if err == nil && code == 200 && body == name {
				last = time.Now()
				continue
			}
			still = append(still, name)
		}
		pending = slices.Clip(still)
		if len(pending) == 0 {
			break
		}
		if time.Now().After(deadline) {
			return res, fmt.Errorf("%d of %d apps not serving 5 minutes after the boot: %v", len(pending), n, pending[:min(5, len(pending))])
		}
		if err := sleep(ctx, 20*time.Millisecond); err != nil {
			return res, err
		}
	}
	res.AllServing = last.Sub(t0)
	log, err := inside("journalctl", "--no-pager", "-o", "cat", "-u", "keter.service")
	if err != nil {
		return res, err
	}
	res.Intact = strings.Count(log, `msg="version folder intact: starting it without unpacking"`)
	res.Unpacked = strings.Count(log, `steps="unpack=`)
	e.logf("  after the boot: all serving in %s (systemd up with keter ready in %s); %d started as kept, %d unpacked",
		res.AllServing.Round(time.Millisecond), res.Boot.Round(time.Millisecond), res.Intact, res.Unpacked)
	return res, nil
}

func (r rebootResult) rows() []row {
	return []row{{fmt.Sprintf("18. host reboot with %d apps live → all serving again", r.Apps),
		fmt.Sprintf("%s from the boot (systemd up with keter ready after %s); %d apps started from their kept folder, %d bundles unpacked",
			secs(r.AllServing), secs(r.Boot), r.Intact, r.Unpacked),
		"< 20 s, none unpacked", verdict(r.AllServing < goalReboot && r.Unpacked == 0 && r.Intact == r.Apps)}}
}

func (r rebootResult) details(p func(string, ...any)) {
	p("")
	p("### 18. Host reboot")
	p("")
	p("A nested systemd (scripts/sandbox.sh inside the benchmark's sandbox) runs packaging/keter.service,")
	p("enabled, with %d apps (bench/app) live. The host is powered off: every keter unit stopped, then its", r.Apps)
	p("systemd killed, and keter's nftables table deleted, as a reboot loses it. It is booted again; the")
	p("time runs from the boot to every app's first 200 through nginx. keter finds no unit running, keeps")
	p("each version folder whose manifest hash still matches, and deploys each app from it (no unpack).")
}
