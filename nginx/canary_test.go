package nginx

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"

	"github.com/keter-systemd/keter/internal/testkit"
)

// canaryCase: a two-stanza webapp behind a port map with canary fronts,
// one of them with a canary version running; a second app without
// canary fronts (state from before them) keeps its plain location.
func canaryCase(t testing.TB, p Paths) []byte {
	t.Helper()
	g := globalConfig(t, "")
	a := app("shop", map[int][]int{0: {43124}, 1: {43125}}, webapp("shop.example.com"), webapp("api.example.com"))
	a.Fronts = map[int][]int{0: {41000, 41001, 41002, 41003}, 1: {41010, 41011, 41012, 41013}}
	a.CanaryFronts = map[int][]int{0: {41020, 41021, 41022, 41023}, 1: {41030, 41031, 41032, 41033}}
	a.Canary = &Canary{Ports: map[int][]int{0: {43200}, 1: {43201}}, Percent: 20, Ready: true}
	b := app("old", map[int][]int{0: {43300}}, webapp("old.example.com"))
	b.Fronts = map[int][]int{0: {41040, 41041, 41042, 41043}}
	apps := []App{a, b}
	for i := range apps {
		apps[i].Ports = apps[i].Fronts // as Manager.apply renders them
	}
	out, err := Render(g, apps, p)
	if err != nil {
		t.Fatalf("Render: %v", err)
	}
	return out.Main
}

func TestCanaryRenderGolden(t *testing.T) {
	p := goldenPaths()
	p.Mapped, p.CanaryDir = true, "/srv/keter/etc/canary"
	got := canaryCase(t, p)
	path := filepath.Join("testdata", "golden", "canary.conf")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading golden file (run with -update): %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("rendered config differs from %s (run go test ./nginx -run TestCanaryRenderGolden -update and review the diff):\n%s", path, got)
	}
	ds, _, err := parseConf(string(got))
	if err != nil {
		t.Fatalf("parsing rendered config: %v", err)
	}
	if err := checkShape(ds, "main", &confStats{}); err != nil {
		t.Fatal(err)
	}
	// Without a flag folder there are no canary groups.
	p.CanaryDir = ""
	if plain := canaryCase(t, p); bytes.Contains(plain, []byte("canary")) {
		t.Fatalf("canary groups rendered without a flag folder:\n%s", plain)
	}
}

// TestCanaryConfigPassesNginxTest feeds the canary case to `nginx -t`.
func TestCanaryConfigPassesNginxTest(t *testing.T) {
	bin := testkit.NeedBinary(t, "nginx", "apt-get install nginx-light")
	dir := t.TempDir()
	p := Paths{Prefix: dir, PidFile: filepath.Join(dir, "nginx.pid"), Control: true, Mapped: true, CanaryDir: filepath.Join(dir, "canary")}
	conf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(conf, canaryCase(t, p), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, err := exec.Command(bin, "-t", "-q", "-p", dir, "-c", conf).CombinedOutput(); err != nil {
		t.Fatalf("nginx -t: %v\n%s", err, b)
	}
}

// TestCanaryFlags: a share is buckets 0..N-1, whatever the share before
// it; no canary leaves no folder.
func TestCanaryFlags(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keter_shop_0")
	for _, pct := range []int{10, 50, 20, 0, 100, 7} {
		t.Run(strconv.Itoa(pct), func(t *testing.T) {
			if err := setFlags(dir, pct); err != nil {
				t.Fatal(err)
			}
			want := []string{canaryOn}
			for b := range pct {
				want = append(want, strconv.Itoa(b))
			}
			if got := names(t, dir); !slices.Equal(got, sorted(want)) {
				t.Fatalf("share %d: flags %v, want %v", pct, got, sorted(want))
			}
		})
	}
	if err := clearFlags(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("the folder is left after clearFlags: %v", err)
	}
}

func names(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		out = append(out, e.Name())
	}
	return sorted(out)
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

func TestLastFront(t *testing.T) {
	for _, tc := range []struct {
		line string
		want int
	}{
		{"<190>Dec  6 22:30:04 keter: 127.0.0.1:41020", 41020},
		{"<190>Dec  6 22:30:04 keter: 127.0.0.1:41020, 127.0.0.1:41000", 41000},
		{"<190>Dec  6 22:30:04 keter: 127.0.0.1:41020 : 127.0.0.1:41001", 41001},
		{"<190>Dec  6 22:30:04 keter: -", 0},
		{"keter: 127.0.0.1:99999", 0},
		{"keter: 127.0.0.1:", 0},
	} {
		if got := lastFront(tc.line); got != tc.want {
			t.Errorf("lastFront(%q) = %d, want %d", tc.line, got, tc.want)
		}
	}
}
