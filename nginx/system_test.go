package nginx

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	sddbus "github.com/coreos/go-systemd/v22/dbus"

	"github.com/keter-systemd/keter/bundle"
	"github.com/keter-systemd/keter/config"
	"github.com/keter-systemd/keter/internal/testkit"
)

// TestSystemMode runs a "system" nginx (our own main nginx.conf that
// includes conf.d/*.conf, as Debian's does) as a unit like nginx.service,
// and lets the Manager own only the include file.
func TestSystemMode(t *testing.T) {
	testkit.NeedSystemd(t)
	bin := testkit.NeedBinary(t, "nginx", "apt-get install nginx-light")
	ctx := t.Context()
	root := testkit.Root(t)
	etc := filepath.Join(root, "system-nginx")
	include := filepath.Join(etc, "conf.d", "keter.conf")
	mainConf := filepath.Join(etc, "nginx.conf")
	writeFile(t, filepath.Join(etc, "conf.d", "other.conf"), "# the operator's own file\n")
	writeFile(t, mainConf, fmt.Sprintf(`daemon off;
pid %s/nginx.pid;
error_log stderr;
events {}
http {
    include /etc/nginx/mime.types;
    include %s/conf.d/*.conf;
}
`, etc, etc))
	units := newSDUnits(t)
	service := "nginx-test-" + testkit.Token() + ".service"
	reload := sddbus.PropExecStart([]string{bin, "-c", mainConf, "-s", "reload"}, true)
	reload.Name = "ExecReload"
	if err := units.StartTransient(ctx, service, []sddbus.Property{
		sddbus.PropType("exec"), sddbus.PropExecStart([]string{bin, "-c", mainConf}, true), reload,
	}); err != nil {
		t.Fatalf("starting the system nginx: %v", err)
	}
	t.Cleanup(func() { units.Stop(t.Context(), service) })

	port := testkit.FreePort(t)
	g, _, err := config.Parse([]byte(fmt.Sprintf(`root: %s
listeners: [{host: 127.0.0.1, port: %d}]
nginx:
  mode: system
  binary: %s
  include-file: %s
  service: %s
`, root, port, bin, include, service)), root)
	if err != nil {
		t.Fatal(err)
	}
	m := New(g, units, slog.Default(), WithSystemConf(mainConf))
	if m.Unit() != service {
		t.Fatalf("system mode reloads %q, want %q", m.Unit(), service)
	}
	if err := m.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	if m.Reloads() != 1 {
		t.Fatalf("Start wrote the include and reloaded %d times, want 1", m.Reloads())
	}
	c := client(fmt.Sprintf("127.0.0.1:%d", port))
	base := fmt.Sprintf("http://x:%d/", port)

	web := backend(t, "sys")
	apps := []App{{Name: "sys", Dir: root, Ports: one(map[int]int{0: portOf(t, web)}), Config: &bundle.AppConfig{Stanzas: []bundle.Stanza{webapp("sys.test")}}}}
	if err := m.Apply(ctx, apps); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	eventually(t, "the system nginx serves the new host", func() error {
		a, err := get(c, base, map[string]string{"Host": "sys.test"})
		if err != nil || a.status != 200 || !strings.Contains(a.body, "app=sys host=sys.test") {
			return fmt.Errorf("%+v %v", a, err)
		}
		return nil
	})
	if m.Reloads() != 2 {
		t.Fatalf("Reloads = %d, want 2", m.Reloads())
	}

	before, _ := os.ReadFile(include)
	bad := webapp("bad.test")
	bad.WebApp.SSL = bundle.SSL{Enabled: true, Certificate: "/nonexistent/cert.pem", Key: "/nonexistent/key.pem"}
	g.Listeners = append(g.Listeners, config.Listener{Host: "127.0.0.1", Port: testkit.FreePort(t), Certificate: "/nonexistent/l.pem", Key: "/nonexistent/l.key"})
	err = m.Apply(ctx, append(apps, App{Name: "bad", Dir: root, Ports: one(map[int]int{0: 1}), Config: &bundle.AppConfig{Stanzas: []bundle.Stanza{bad}}}))
	if !errors.Is(err, ErrConfigTest) || !strings.Contains(err.Error(), "/nonexistent/") {
		t.Fatalf("want nginx's refusal, got %v", err)
	}
	after, _ := os.ReadFile(include)
	if string(after) != string(before) {
		t.Fatal("a refused include stayed in place")
	}
	if m.Reloads() != 2 {
		t.Fatal("a refused include was reloaded")
	}
	if left, _ := filepath.Glob(filepath.Join(etc, "conf.d", ".keter.conf.new-*")); len(left) != 0 {
		t.Fatalf("temp files left: %v", left)
	}
	a, err := get(c, base, map[string]string{"Host": "sys.test"})
	if err != nil || a.status != 200 {
		t.Fatalf("the old config stopped serving: %+v %v", a, err)
	}
	// The operator's own file is untouched.
	if b, _ := os.ReadFile(filepath.Join(etc, "conf.d", "other.conf")); string(b) != "# the operator's own file\n" {
		t.Fatalf("other.conf changed: %q", b)
	}
}
