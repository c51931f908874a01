package bundle

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestReleaseKey(t *testing.T) {
	const web = "stanzas:\n  - type: webapp\n    exec: ../bin/app\n    host: a.test\n"
	for _, tc := range []struct {
		name, yaml string
		want       *Release
		err        string // substring of the error; "" means none
		warn       string // substring of a warning
	}{
		{name: "stanza format", yaml: "release:\n  exec: ../bin/migrate\n  args: [up, --all]\n  timeout: 90s\n" + web,
			want: &Release{Exec: "bin/migrate", Args: []string{"up", "--all"}, Timeout: 90 * time.Second}},
		{name: "flat format", yaml: "exec: ../bin/app\nhost: a.test\nrelease: {exec: ../bin/migrate}\n",
			want: &Release{Exec: "bin/migrate", Args: []string{}, Timeout: DefaultReleaseTimeout}},
		{name: "absolute exec", yaml: "release: {exec: /usr/bin/true}\n" + web,
			want: &Release{Exec: "/usr/bin/true", Args: []string{}, Timeout: DefaultReleaseTimeout}},
		{name: "borrows a background stanza", yaml: "release: {exec: ../m}\nstanzas:\n  - type: background\n    exec: ../w\n",
			want: &Release{Exec: "m", Args: []string{}, Timeout: DefaultReleaseTimeout}},
		{name: "absent", yaml: web},
		{name: "null", yaml: "release:\n" + web},
		{name: "no exec", yaml: "release: {args: [up]}\n" + web, err: "release.exec: invalid value: required"},
		{name: "exec escapes the bundle", yaml: "release: {exec: ../../migrate}\n" + web, err: "release.exec: invalid value: path \"../../migrate\" escapes the bundle"},
		{name: "args not a list", yaml: "release: {exec: ../m, args: up}\n" + web, err: "release.args: invalid value: must be a list of strings"},
		{name: "bare number timeout", yaml: "release: {exec: ../m, timeout: 600}\n" + web, err: "release.timeout: invalid value: must be a duration with its unit"},
		{name: "not a duration", yaml: "release: {exec: ../m, timeout: long}\n" + web, err: `release.timeout: invalid value: must be a duration with its unit, such as 30s or 2m, found "long"`},
		{name: "zero timeout", yaml: "release: {exec: ../m, timeout: 0s}\n" + web, err: "release.timeout: invalid value: must be more than 0s"},
		{name: "too long", yaml: "release: {exec: ../m, timeout: 25h}\n" + web, err: "at most 24h0m0s, found 25h0m0s"},
		{name: "env", yaml: "release: {exec: ../m, env: {A: b}}\n" + web, err: "release.env: invalid value: not allowed: the release step gets the environment of the app's first webapp"},
		{name: "not a mapping", yaml: "release: ../bin/migrate\n" + web, err: "release: invalid value: must be a mapping"},
		{name: "nothing to borrow from", yaml: "release: {exec: ../m}\nstanzas:\n  - type: static-files\n    host: s.test\n    root: ../public\n",
			err: "release: invalid value: needs a webapp or background stanza"},
		{name: "unknown key", yaml: "release: {exec: ../m, user: root}\n" + web,
			want: &Release{Exec: "m", Args: []string{}, Timeout: DefaultReleaseTimeout}, warn: "release.user: unknown key ignored"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, warns, err := ParseWithWarnings([]byte(tc.yaml))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				if !errors.Is(err, ErrInvalid) {
					t.Fatalf("err = %v, want ErrInvalid", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(c.Release, tc.want) {
				t.Fatalf("Release = %+v, want %+v", c.Release, tc.want)
			}
			found := tc.warn == ""
			for _, w := range warns {
				found = found || strings.Contains(w, tc.warn)
				if tc.warn == "" && strings.Contains(w, "release") {
					t.Fatalf("warning about release: %s", w)
				}
			}
			if !found {
				t.Fatalf("warnings %q lack %q", warns, tc.warn)
			}
		})
	}
}

func TestReleaseStanza(t *testing.T) {
	for _, tc := range []struct {
		yaml string
		want int
	}{
		{"stanzas:\n  - {type: background, exec: ../w}\n  - {type: webapp, exec: ../a, host: a.test}\n", 1},
		{"stanzas:\n  - {type: static-files, host: s.test, root: ../p}\n  - {type: background, exec: ../w}\n", 1},
		{"exec: ../a\nhost: a.test\n", 0},
		{"stanzas:\n  - {type: static-files, host: s.test, root: ../p}\n", -1},
	} {
		c, err := Parse([]byte(tc.yaml))
		if err != nil {
			t.Fatal(err)
		}
		if got := c.ReleaseStanza(); got != tc.want {
			t.Errorf("ReleaseStanza of %q = %d, want %d", tc.yaml, got, tc.want)
		}
	}
}

// TestLoadReleaseExec: the step's exec is checked like a stanza's.
func TestLoadReleaseExec(t *testing.T) {
	const yaml = "release: {exec: ../bin/migrate}\nexec: ../bin/app\nhost: a.test\n"
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  error
		msg   string
	}{
		{"ok", map[string]string{"bin/migrate*": "#!/bin/sh\n"}, nil, ""},
		{"missing", map[string]string{}, ErrExecutableNotFound, "release.exec: executable not found: bin/migrate"},
		{"not executable", map[string]string{"bin/migrate": "#!/bin/sh\n"}, ErrFileNotExecutable, "release.exec: file is not executable: bin/migrate has mode -rw-r--r--"},
		{"a folder", map[string]string{"bin/migrate/": ""}, ErrFileNotExecutable, "bin/migrate is a folder"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			files := map[string]string{"config/keter.yaml": yaml, "bin/app*": "#!/bin/sh\n"}
			for k, v := range tc.files {
				files[k] = v
			}
			writeTree(t, dir, files)
			c, err := Load(dir)
			if tc.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				if c.Release == nil || c.Release.Exec != "bin/migrate" {
					t.Fatalf("Release = %+v", c.Release)
				}
				return
			}
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("err = %v, want %v with %q", err, tc.want, tc.msg)
			}
		})
	}
}
