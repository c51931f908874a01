package unitgen

import (
	"slices"
	"strings"
	"testing"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
	godbus "github.com/godbus/dbus/v5"
)

// TestOneOffUnit: a one-off run of a webapp stanza keeps the stanza's
// user, sandbox, limits, folder and environment (public part and a copy
// of the secret file), and takes its own name, no restarts and no stop
// hook, with journal fields that say who ran it.
func TestOneOffUnit(t *testing.T) {
	in := Input{App: "shop", Version: "v7", Index: 0, Stanza: webStanza(nil), Dir: "/opt/keter/temp/shop-v7", Port: 43124,
		Global: global(), EnvDir: "/opt/keter/etc/env", StopHook: []string{"/bin/true", "port", "out"}}
	in.Stanza.WebApp.Systemd.MemoryMax = 256 << 20
	base, err := Build(in)
	if err != nil {
		t.Fatal(err)
	}
	u, err := OneOffUnit(base, OneOff{Run: 42, Argv: []string{"sh", "-c", "echo $X 'q'; exit 7"}, User: "1001/deploy", Stdio: []int{7, 8, 9}})
	if err != nil {
		t.Fatal(err)
	}
	if u.Name != "keter-app-shop-v7-exec.42.service" {
		t.Errorf("name %s", u.Name)
	}
	if m, ok := ParseUnitName(u.Name); !ok || !IsOneOff(m) || m.App != "shop" || m.Version != "v7" || m.Instance != 42 {
		t.Errorf("name reads back as %+v %v", m, ok)
	}
	if m, ok := ParseMeta(propValue(u, "Description").(string)); !ok || !IsOneOff(m) {
		t.Errorf("description reads back as %+v %v", m, ok)
	}
	if IsOneOff(base.Meta) {
		t.Error("the stanza's own unit counts as a one-off")
	}
	for _, name := range []string{"User", "DynamicUser", "ProtectSystem", "TemporaryFileSystem", "BindPaths", "SystemCallFilter", "MemoryMax", "WorkingDirectory", "Environment", "ExecStartPreEx", "Slice"} {
		if !slices.ContainsFunc(u.Properties, func(p sddbus.Property) bool { return p.Name == name }) {
			t.Errorf("%s lost", name)
		}
	}
	if propValue(u, "Restart") != "no" {
		t.Errorf("Restart=%v", propValue(u, "Restart"))
	}
	for _, gone := range []string{"ExecStopPostEx", "RestartUSec", "StartLimitBurst"} {
		if propValue(u, gone) != nil {
			t.Errorf("%s kept: %v", gone, propValue(u, gone))
		}
	}
	if env := strings.Join(propValue(u, "Environment").([]string), " "); !strings.Contains(env, "PORT=43124") {
		t.Errorf("Environment %s, want the stanza's", env)
	}
	files := propValue(u, "EnvironmentFiles").([]envFileRef)
	if len(files) != 1 || files[0].Path != "/opt/keter/etc/env/keter-app-shop-v7-exec.42.env" || u.EnvFile != files[0].Path || string(u.Secrets) != string(base.Secrets) {
		t.Errorf("env file %+v %s, secrets %q want %q", files, u.EnvFile, u.Secrets, base.Secrets)
	}
	start := propValue(u, "ExecStart").([]execCmd)
	if u.Launcher != "/opt/keter/temp/shop-v7/.keter-exec-shop-v7-exec.42" || len(start) != 1 || strings.Join(start[0].Args, " ") != "/bin/sh "+u.Launcher {
		t.Errorf("launcher %s, ExecStart %+v", u.Launcher, start)
	}
	if want := `exec 'sh' '-c' 'echo $X '\''q'\''; exit 7'`; !strings.Contains(string(u.LauncherScript), want+"\n") {
		t.Errorf("launcher script %q, want %q", u.LauncherScript, want)
	}
	if propValue(u, "StandardInputFileDescriptor") != godbus.UnixFD(7) || propValue(u, "StandardErrorFileDescriptor") != godbus.UnixFD(9) {
		t.Errorf("stdio %v %v", propValue(u, "StandardInputFileDescriptor"), propValue(u, "StandardErrorFileDescriptor"))
	}
	var fields []string
	for _, f := range propValue(u, "LogExtraFields").([][]byte) {
		fields = append(fields, string(f))
	}
	if got := strings.Join(fields, " "); got != "KETER_APP=shop KETER_VERSION=v7 KETER_STANZA=exec KETER_INSTANCE=42 KETER_EXEC_USER=1001/deploy" {
		t.Errorf("LogExtraFields %s", got)
	}
}

func TestOneOffUnitRefuses(t *testing.T) {
	base, err := Build(Input{App: "shop", Version: "1", Stanza: bgStanza(0, 0), Dir: "/opt/keter/temp/shop-1", Global: global(), EnvDir: "/opt/keter/etc/env"})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		o    OneOff
		want string
	}{
		{"no command", OneOff{Run: 1}, "no command"},
		{"empty command", OneOff{Run: 1, Argv: []string{""}}, "no command"},
		{"NUL", OneOff{Run: 1, Argv: []string{"echo", "a\x00b"}}, "NUL"},
		{"run 0", OneOff{Argv: []string{"true"}}, "not positive"},
		{"two fds", OneOff{Run: 1, Argv: []string{"true"}, Stdio: []int{0, 1}}, "want 3 file descriptors"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, err := OneOffUnit(base, c.o); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("err %v, want %q", err, c.want)
			}
		})
	}
}
