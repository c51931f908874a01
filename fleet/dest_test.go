package fleet

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestHosts(t *testing.T) {
	file := filepath.Join(t.TempDir(), "hosts")
	os.WriteFile(file, []byte("# web tier\nweb3\n\n  ssh://deploy@[2001:db8::1]:2222  \n"), 0o644)
	tests := []struct {
		name, list, file string
		want             []string
		bad              string // in the error, "" for none
	}{
		{name: "list", list: "web1, deploy@web2,ssh://[::1]:22", want: []string{"web1", "deploy@web2", "ssh://[::1]:22"}},
		{name: "list and file", list: "web1", file: file, want: []string{"web1", "web3", "ssh://deploy@[2001:db8::1]:2222"}},
		{name: "option injection", list: "web1,-oProxyCommand=sh", bad: "starts with '-'"},
		{name: "space", list: "web1,a b", bad: "space"},
		{name: "newline", list: "web1,a\nb", bad: "space or control"},
		{name: "twice", list: "web1,web1", bad: "given twice"},
		{name: "none", list: " , ", bad: "no hosts"},
		{name: "missing file", file: "/nonexistent/hosts", bad: "reading hosts file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Hosts(tt.list, tt.file)
			if tt.bad != "" {
				if err == nil || !strings.Contains(err.Error(), tt.bad) {
					t.Fatalf("Hosts: %v, want an error with %q", err, tt.bad)
				}
				if !strings.Contains(tt.bad, "file") && !errors.Is(err, ErrBadDest) {
					t.Errorf("error %v is not ErrBadDest", err)
				}
				return
			}
			if err != nil || !slices.Equal(got, tt.want) {
				t.Fatalf("Hosts = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

// TestQuote hands quoted words to a real shell, as ssh does with the
// remote command line, and checks each arrives as one unchanged argument.
func TestQuote(t *testing.T) {
	words := []string{"plain", "", "it's", `a "b" c`, "$(touch /tmp/x)", "`id`", "a;b|c&d", "new\nline", `back\slash`, "*", "'"}
	quoted := make([]string, len(words))
	for i, w := range words {
		quoted[i] = quote(w)
	}
	out, err := exec.Command("sh", "-c", `printf '%s\036' `+strings.Join(quoted, " ")).Output()
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Split(strings.TrimSuffix(string(out), "\x1e"), "\x1e")
	if !slices.Equal(got, words) {
		t.Fatalf("the shell saw %q, want %q", got, words)
	}
}

func TestTail(t *testing.T) {
	var tl tail
	for i := range tailLines + 5 {
		tl.Write([]byte("line " + strings.Repeat("x", i%3) + "\n"))
	}
	tl.Write([]byte("ssh: connect to host 10.0.0.1 port 22: No route"))
	tl.Write([]byte(" to host\r\n"))
	lines := strings.Split(tl.String(), "\n")
	if len(lines) != tailLines {
		t.Fatalf("kept %d lines, want %d", len(lines), tailLines)
	}
	if last := lines[len(lines)-1]; last != "ssh: connect to host 10.0.0.1 port 22: No route to host" {
		t.Fatalf("last line %q", last)
	}
}

func TestDestArgs(t *testing.T) {
	tests := []struct {
		dest string
		want []string // nil: refused
	}{
		{"web1", []string{"--", "web1"}},
		{"deploy@web1", []string{"--", "deploy@web1"}},
		{"deploy@2001:db8::1", []string{"--", "deploy@2001:db8::1"}},
		{"ssh://web1", []string{"--", "web1"}},
		{"ssh://deploy@web1:2222", []string{"-l", "deploy", "-p", "2222", "--", "web1"}},
		{"ssh://deploy@[2001:db8::1]:22", []string{"-l", "deploy", "-p", "22", "--", "2001:db8::1"}},
		{"ssh://[::1]", []string{"--", "::1"}},
		{"ssh://deploy:secret@web1", nil},
		{"ssh://web1:http", nil},
		{"ssh://web1:0", nil},
		{"ssh://web1/path", nil},
		{"ssh://web1?x=1", nil},
		{"ssh://-oProxyCommand=x", nil},
		{"ssh://", nil},
		{"-p2222", nil},
	}
	for _, tt := range tests {
		t.Run(tt.dest, func(t *testing.T) {
			got, err := destArgs(tt.dest)
			if tt.want == nil {
				if err == nil || !errors.Is(err, ErrBadDest) {
					t.Fatalf("destArgs = %q, %v; want ErrBadDest", got, err)
				}
				return
			}
			if err != nil || !slices.Equal(got, tt.want) {
				t.Fatalf("destArgs = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}
