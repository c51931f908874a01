package nginx

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keter-systemd/keter/bundle"
	"github.com/keter-systemd/keter/internal/testkit"
)

// TestManagedNginxComesBackAfterSIGKILL: a SIGKILLed master (the OOM
// killer, a crash) is a failure systemd restarts, and the apps are served
// again by a new master; with the port map too, whose rule must follow
// nginx into the cgroup of its new start.
func TestManagedNginxComesBackAfterSIGKILL(t *testing.T) {
	for _, mapped := range []bool{false, true} {
		t.Run(fmt.Sprintf("mapped=%v", mapped), func(t *testing.T) {
			var opts []Option
			if mapped {
				opts = append(opts, WithPortMap(needPortMap(t)))
			}
			f := startFront(t, "", opts...)
			ctx := t.Context()
			app := backend(t, "a")
			cfg := &bundle.AppConfig{Stanzas: []bundle.Stanza{webapp("back.test")}}
			live := App{Name: "back", Dir: f.root, Config: cfg, Ports: one(map[int]int{0: portOf(t, app)})}
			if mapped {
				live.Fronts = one(map[int]int{0: testkit.FreePort(t)})
			}
			if err := f.m.Apply(ctx, []App{live}); err != nil {
				t.Fatal(err)
			}
			c := client(fmt.Sprintf("127.0.0.1:%d", f.port))
			url := fmt.Sprintf("http://x:%d/", f.port)
			host := map[string]string{"Host": "back.test"}
			if got, err := get(c, url, host); err != nil || !strings.HasPrefix(got.body, "app=a ") {
				t.Fatalf("before the kill: %+v %v", got, err)
			}
			for round := range 2 { // the second round checks the restart is not a one-off
				pid := f.units.mainPID(ctx, f.unitName)
				if pid == 0 {
					t.Fatalf("round %d: no main pid", round)
				}
				restarts := f.m.Restarts()
				if err := syscall.Kill(int(pid), syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
				killed := time.Now()
				eventually(t, "nginx serves again after SIGKILL", func() error {
					if now := f.units.mainPID(ctx, f.unitName); now == 0 || now == pid {
						state, _ := f.units.ActiveState(ctx, f.unitName)
						return fmt.Errorf("main pid %d (killed %d), unit %s", now, pid, state)
					}
					got, err := get(c, url, host)
					if err != nil || !strings.HasPrefix(got.body, "app=a ") {
						return fmt.Errorf("%+v %v", got, err)
					}
					return nil
				})
				t.Logf("round %d: serving again %s after the SIGKILL", round, time.Since(killed).Round(time.Millisecond))
				f.m.checkNginx(ctx)
				if f.m.Restarts() != restarts+1 {
					t.Errorf("keter did not notice the restart (%d restarts seen, want %d)", f.m.Restarts(), restarts+1)
				}
			}
		})
	}
}
