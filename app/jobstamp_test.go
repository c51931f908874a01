package app

import (
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// A persistent job's new timer gets the newest stamp of the same app's
// earlier timers of the same job; other apps' and jobs' stamps stay.
func TestCarryStamp(t *testing.T) {
	dir := t.TempDir()
	old := timerStamps
	timerStamps = dir
	t.Cleanup(func() { timerStamps = old })
	hour := time.Now().Add(-time.Hour).Truncate(time.Second)
	stamps := map[string]time.Time{
		"stamp-keter-app-shop-3-job-nightly.timer":     hour.Add(-time.Hour),
		"stamp-keter-app-shop-7-job-nightly.timer":     hour,
		"stamp-keter-app-shop-7-job-other.timer":       hour.Add(30 * time.Minute),
		"stamp-keter-app-shop-x-7-job-nightly.timer":   hour.Add(40 * time.Minute), // app shop-x
		"stamp-keter-app-shopping-7-job-nightly.timer": hour.Add(50 * time.Minute),
	}
	for name, at := range stamps {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, at, at); err != nil {
			t.Fatal(err)
		}
	}
	m := &Manager{log: slog.New(slog.DiscardHandler)}
	v := &version{app: "shop", id: "9"}
	j := &job{Name: "nightly", Timer: "keter-app-shop-9-job-nightly.timer"}
	m.carryStamp(v, j)
	fi, err := os.Stat(filepath.Join(dir, "stamp-"+j.Timer))
	if err != nil {
		t.Fatalf("no stamp for the new timer: %v", err)
	}
	if !fi.ModTime().Equal(hour) {
		t.Errorf("new stamp at %s, want the newest earlier one %s", fi.ModTime(), hour)
	}
	for name := range stamps {
		_, err := os.Stat(filepath.Join(dir, name))
		gone := os.IsNotExist(err)
		wantGone := name == "stamp-keter-app-shop-3-job-nightly.timer" || name == "stamp-keter-app-shop-7-job-nightly.timer"
		if gone != wantGone {
			t.Errorf("%s: gone=%v, want %v", name, gone, wantGone)
		}
	}

	// A removed app's stamps go; others' stay.
	defer func() {
		dropStamps("shop")
		left, _ := os.ReadDir(dir)
		var names []string
		for _, e := range left {
			names = append(names, e.Name())
		}
		if want := []string{"stamp-keter-app-shop-x-7-job-nightly.timer", "stamp-keter-app-shopping-7-job-nightly.timer"}; !slices.Equal(names, want) {
			t.Errorf("after dropStamps(shop): %v, want %v", names, want)
		}
	}()

	// Its own stamp (a restart of keter) is kept as it is.
	now := time.Now().Truncate(time.Second)
	os.Chtimes(filepath.Join(dir, "stamp-"+j.Timer), now, now)
	m.carryStamp(v, j)
	if fi, _ := os.Stat(filepath.Join(dir, "stamp-"+j.Timer)); !fi.ModTime().Equal(now) {
		t.Errorf("own stamp changed to %s", fi.ModTime())
	}
}
