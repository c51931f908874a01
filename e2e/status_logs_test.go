package e2e

import (
	"fmt"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keter-systemd/keter/internal/testkit"
)

// TestStatusLogLinesByUser: a real keter's status page and API over TCP
// show the apps' log lines (a live app's recent lines, a failed deploy's
// last lines) to root and to members of deploy-group, adm and
// systemd-journal, and everything but them to any other user; /metrics
// and the pages of those users carry no log line and no env value.
func TestStatusLogLinesByUser(t *testing.T) {
	testkit.NeedSystemd(t)
	curl := testkit.NeedBinary(t, "curl", "apt-get install curl")
	testkit.NeedBinary(t, "setpriv", "apt-get install util-linux")
	tok := testkit.Token()
	group, member, admMember, journalMember, stranger := "ktg"+tok, "ktm"+tok, "kta"+tok, "ktj"+tok, "kts"+tok
	if _, err := user.LookupGroup("systemd-journal"); err != nil {
		admin(t, "groupadd", "--system", "systemd-journal")
		t.Cleanup(func() { exec.Command("groupdel", "systemd-journal").Run() })
	}
	admin(t, "groupadd", "--system", group)
	t.Cleanup(func() { exec.Command("groupdel", group).Run() })
	for u, g := range map[string]string{member: group, admMember: "adm", journalMember: "systemd-journal", stranger: ""} {
		args := []string{"useradd", "--system", "-M", "-s", "/usr/sbin/nologin"}
		if g != "" {
			args = append(args, "-G", g)
		}
		admin(t, append(args, u)...)
		t.Cleanup(func() { exec.Command("userdel", u).Run() })
	}

	statusPort := testkit.FreePort(t)
	k := startKeter(t, fmt.Sprintf("deploy-group: %s\nstatus:\n  listen: 127.0.0.1:%d\n", group, statusPort))
	base := fmt.Sprintf("http://127.0.0.1:%d", statusPort)
	good, bad := "logs-good-"+tok, "logs-bad-"+tok
	src := filepath.Join(k.Root, "good.src")
	stanzaBundle(t, src, good+".test", "    env: {SECRET: secret-of-"+good+"}\n", "--message", good)
	k.Drop(src, good+".keter")
	k.WaitBody(good+".test", good, 60*time.Second)
	src = filepath.Join(k.Root, "bad.src")
	stanzaBundle(t, src, bad+".test", "    env: {SECRET: secret-of-"+bad+"}\n", "--exit", "3")
	k.Drop(src, bad+".keter")

	const live, failed = "demoapp listening", "demoapp exiting with 3 as asked"
	eventually(t, 60*time.Second, func() error {
		_, body, err := getURL(base + "/api/apps?log=20")
		if err != nil || !strings.Contains(body, live) || !strings.Contains(body, failed) {
			return fmt.Errorf("root's /api/apps?log=20 lacks %q or %q: %v %.2000s", live, failed, err, body)
		}
		return nil
	})

	pages := []struct {
		path  string
		lines []string
		rest  string
	}{
		{"/", []string{live, failed}, `class="app-name">` + good + `<`},
		{"/api/apps?log=20", []string{live, failed}, `"name": "` + good + `"`},
		{"/api/apps/" + good + "?log=20", []string{live}, `"state": "live"`},
		{"/api/apps/" + bad, []string{failed}, `"last_result": "failed"`},
		{"/metrics", nil, `keter_apps{state="live"} 1`},
	}
	why := "log lines are shown to root and members of " + group + ", adm or systemd-journal"
	for _, c := range []struct {
		name, user string // user "" is root
		shown      bool
	}{
		{"root", "", true}, {"deploy-group", member, true}, {"adm", admMember, true}, {"systemd-journal", journalMember, true},
		{"nobody", "nobody", false}, {"in no group", stranger, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			for _, p := range pages {
				code, body := curlAs(t, curl, c.user, base+p.path)
				if code != 200 || !strings.Contains(body, p.rest) {
					t.Errorf("%s: %d, want 200 with %s:\n%.2000s", p.path, code, p.rest, body)
					continue
				}
				for _, l := range p.lines {
					if strings.Contains(body, l) != c.shown {
						t.Errorf("%s: has %q: %v, want %v:\n%.2000s", p.path, l, !c.shown, c.shown, body)
					}
				}
				if says, want := strings.Contains(body, why), p.lines != nil && !c.shown; says != want {
					t.Errorf("%s: says %q: %v, want %v", p.path, why, says, want)
				}
				if (p.lines == nil || !c.shown) && strings.Contains(body, "secret-of-") {
					t.Errorf("%s shows an app's env value:\n%.2000s", p.path, body)
				}
			}
		})
	}
}

// curlAs fetches url as user (root when ""), with its groups, and returns
// the status code and body.
func curlAs(t *testing.T, curl, user, url string) (int, string) {
	t.Helper()
	args := []string{curl, "-s", "-w", "\n%{http_code}", url}
	if user != "" {
		args = append([]string{"setpriv", "--reuid=" + user, "--regid=" + primaryGroup(t, user), "--init-groups"}, args...)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir = "/"
	out, err := cmd.Output()
	s := string(out)
	i := strings.LastIndexByte(s, '\n')
	if err != nil || i < 0 {
		t.Fatalf("%s: %v %q", strings.Join(args, " "), err, s)
	}
	code, err := strconv.Atoi(s[i+1:])
	if err != nil {
		t.Fatalf("%s: no status code in %q", strings.Join(args, " "), s)
	}
	return code, s[:i]
}

func primaryGroup(t *testing.T, name string) string {
	t.Helper()
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	return u.Gid
}

// admin runs a user or group command, again while another one holds
// the database's lock.
func admin(t *testing.T, args ...string) {
	t.Helper()
	var out []byte
	var err error
	for range 20 {
		if out, err = exec.Command(args[0], args[1:]...).CombinedOutput(); err == nil {
			return
		}
		if !strings.Contains(string(out), "lock") {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	testkit.Missing(t, "%s: %v %s", strings.Join(args, " "), err, out)
}
