package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/keter-systemd/keter/internal/freeport"
)

// benchFrontAB is a diagnosis, not a goal (BENCHES=frontab, not part of
// make bench): keter's nginx for the throughput benchmark's app, the plain
// nginx, and copies of keter's rendered nginx.conf without the port map
// hop (the app's own port), each copy without one of keter's per-request
// differences from the plain nginx, in alternating rounds as ab.go runs
// them. Every nginx runs as a unit. FRONTAB_SET=name,... picks copies;
// FRONTAB_DUMP=1 prints each config; FRONTAB_GZIP=1 serves the gzip
// benchmark's page and asks for it gzipped. Every nginx is scheduled as
// keter's is (scheduleAlike) unless FRONTAB_SCHED=as-is.
func benchFrontAB(ctx context.Context, e env) error {
	k, err := startKeter(ctx, e.keterBin, e.base, "frontab")
	if err != nil {
		return err
	}
	defer k.stop(ctx)
	if err := k.waitReady(ctx); err != nil {
		return err
	}
	host, body := "throughput.bench.test", "hello"
	var headers []string
	if os.Getenv("FRONTAB_GZIP") != "" {
		body, headers = gzipPage(), []string{"Accept-Encoding: gzip"}
	}
	b, err := makeBundle(e.app, host, body)
	if err != nil {
		return err
	}
	if err := stage(k.incoming(), "throughput", b); err != nil {
		return err
	}
	if _, err := publish(k.incoming(), "throughput"); err != nil {
		return err
	}
	if _, err := waitBody(ctx, k.port, host, body, 5*time.Millisecond, 60*time.Second); err != nil {
		return err
	}
	entries, err := k.waitLog(ctx, "version live", 1, 30*time.Second)
	if err != nil {
		return err
	}
	appPort, err := strconv.Atoi(portsRE.FindString(filter(entries, "version live")[0].fields["ports"]))
	if err != nil {
		return errors.New("keter's log names no port for the app")
	}
	raw, err := os.ReadFile(filepath.Join(k.root, "etc", "nginx", "nginx.conf"))
	if err != nil {
		return err
	}
	conf := string(raw)
	dump := os.Getenv("FRONTAB_DUMP") != ""
	if dump {
		e.logf("  app port %d, keter's nginx.conf:\n%s", appPort, conf)
	}
	// A copy: its own listeners and pid, the app's own port for every
	// upstream server.
	listenRE := regexp.MustCompile(`listen 127\.0\.0\.1:(\d+)`)
	copyConf := func(dir string) (string, int, error) {
		ports := map[string]int{}
		for _, m := range listenRE.FindAllStringSubmatch(conf, -1) {
			if _, ok := ports[m[1]]; !ok {
				if ports[m[1]], err = freeport.Get(); err != nil {
					return "", 0, err
				}
			}
		}
		c := listenRE.ReplaceAllStringFunc(conf, func(s string) string {
			return fmt.Sprintf("listen 127.0.0.1:%d", ports[listenRE.FindStringSubmatch(s)[1]])
		})
		c = regexp.MustCompile(`pid "[^"]*";`).ReplaceAllString(c, fmt.Sprintf("pid %q;", dir+"/nginx.pid"))
		c = regexp.MustCompile(`server 127\.0\.0\.1:\d+`).ReplaceAllString(c, fmt.Sprintf("server 127.0.0.1:%d", appPort))
		return c, ports[strconv.Itoa(k.port)], nil
	}
	del := func(res ...string) func(string) string {
		return func(c string) string {
			for _, r := range res {
				c = regexp.MustCompile(r).ReplaceAllString(c, "")
			}
			return c
		}
	}
	noCanary := func(c string) string {
		return regexp.MustCompile(`(?s)set \$keter_canary_cookie "";.*?(proxy_pass http://keter_\w+;\n).*?access_log "syslog[^\n]*\n`).ReplaceAllString(c, "${1}")
	}
	oneServer := func(c string) string {
		return regexp.MustCompile(`(?s)(upstream keter_throughput_\w+_0 \{).*?(keepalive 64;)`).ReplaceAllString(c, fmt.Sprintf("${1} server 127.0.0.1:%d; ${2}", appPort))
	}
	noHeaders := func(c string) string {
		c = del(`proxy_set_header (X-Forwarded-For|X-Forwarded-Proto|X-Real-IP|Upgrade) [^;]*;`)(c)
		return strings.ReplaceAll(c, "proxy_set_header Connection $keter_connection;", `proxy_set_header Connection "";`)
	}
	noGzip := del(`gzip[a-z_]* [^;]*;`)
	noErrors := del(`error_page 50[234] [^;]*;`)
	noBounds := del(`keepalive_time(out)? 500ms;`)
	lean := func(c string) string { return noBounds(noErrors(noGzip(noHeaders(oneServer(noCanary(c)))))) }

	type variant struct {
		name, unit string
		port       int
		rps        []wrkResult
	}
	vs := []*variant{{name: "keter", port: k.port, unit: nginxUnit}}
	plainGzip := ""
	if len(headers) > 0 {
		plainGzip = gzipDirectives()
	}
	plainDir := filepath.Join(e.base, "ab-plain")
	plainPort, stop, err := startPlainNginxWith(ctx, plainDir, appPort, "", "", plainGzip)
	if err != nil {
		return err
	}
	defer stop()
	vs = append(vs, &variant{name: "plain", port: plainPort, unit: plainUnit(plainDir)})
	want := os.Getenv("FRONTAB_SET")
	for _, x := range []struct {
		name string
		f    func(string) string
	}{
		{"copy", nil}, {"copy-no-canary", noCanary}, {"copy-one-server", oneServer}, {"copy-no-headers", noHeaders},
		{"copy-no-gzip", noGzip}, {"copy-no-error-pages", noErrors}, {"copy-no-500ms", noBounds}, {"copy-lean", lean},
	} {
		if want != "" && x.name != "copy" && !strings.Contains(","+want+",", ","+x.name+",") {
			continue
		}
		dir := filepath.Join(e.base, "ab-"+x.name)
		c, port, err := copyConf(dir)
		if err != nil {
			return err
		}
		if x.f != nil {
			c = x.f(c)
		}
		stop, err := startNginxConf(ctx, dir, c)
		if err != nil {
			return fmt.Errorf("%s: %w", x.name, err)
		}
		defer stop()
		vs = append(vs, &variant{name: x.name, port: port, unit: plainUnit(dir)})
		if dump {
			e.logf("  %s:\n%s", x.name, c)
		}
	}
	app, err := appUnit(ctx)
	if err != nil {
		return err
	}
	cs := make([]contender, len(vs))
	for i, v := range vs {
		if _, err := waitBody(ctx, v.port, host, body, 5*time.Millisecond, 10*time.Second); err != nil {
			return fmt.Errorf("%s: %w", v.name, err)
		}
		cs[i] = contender{host, v.port, &v.rps, map[string]string{"nginx": v.unit, "app": app}}
		if i > 0 && os.Getenv("FRONTAB_SCHED") != "as-is" {
			if err := scheduleAllAlike(ctx, e, v.unit); err != nil {
				return err
			}
		}
	}
	err = alternate(ctx, e, cs, func(round int) {
		var line []string
		for _, v := range vs {
			line = append(line, fmt.Sprintf("%s %.0f", v.name, v.rps[round].RPS()))
		}
		e.logf("  round %d: %s", round+1, strings.Join(line, ", "))
	}, headers...)
	if err != nil {
		return err
	}
	for _, v := range vs {
		e.logf("  %-20s / plain: %s; / copy: %s", v.name, spread(v.rps, vs[1].rps), spread(v.rps, vs[2].rps))
		e.logf("  %-20s CPU: %s", v.name, cpuPerRequest(v.rps))
	}
	return nil
}
