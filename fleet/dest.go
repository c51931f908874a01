package fleet

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strings"
	"unicode"
)

// ErrBadDest means a destination cannot be handed to ssh.
var ErrBadDest = errors.New("bad host")

// CheckDest refuses what ssh would read as an option or what is not one
// word: a DEST is an ssh_config alias, [user@]host or
// ssh://[user@]host[:port], and ssh itself parses it.
func CheckDest(d string) error {
	switch {
	case d == "":
		return fmt.Errorf("%w: empty", ErrBadDest)
	case strings.HasPrefix(d, "-"):
		return fmt.Errorf("%w %q: starts with '-'", ErrBadDest, d)
	case strings.IndexFunc(d, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0:
		return fmt.Errorf("%w %q: holds a space or control character", ErrBadDest, d)
	}
	return nil
}

// Hosts joins --hosts (comma-separated) and --hosts-file (one a line,
// blank lines and # comments skipped), checks each and refuses repeats.
func Hosts(list, file string) ([]string, error) {
	var hosts []string
	for _, h := range strings.Split(list, ",") {
		if h = strings.TrimSpace(h); h != "" {
			hosts = append(hosts, h)
		}
	}
	if file != "" {
		f, err := os.Open(file)
		if err != nil {
			return nil, fmt.Errorf("reading hosts file: %w", err)
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if h := strings.TrimSpace(sc.Text()); h != "" && !strings.HasPrefix(h, "#") {
				hosts = append(hosts, h)
			}
		}
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("reading hosts file: %w", err)
		}
	}
	if len(hosts) == 0 {
		return nil, fmt.Errorf("%w: no hosts given", ErrBadDest)
	}
	seen := map[string]bool{}
	var errs []error
	for _, h := range hosts {
		if err := CheckDest(h); err != nil {
			errs = append(errs, err)
		} else if seen[h] {
			errs = append(errs, fmt.Errorf("%w %q: given twice", ErrBadDest, h))
		}
		seen[h] = true
	}
	return hosts, errors.Join(errs...)
}

// quote makes s one word for the remote user's shell, which ssh hands
// the command line to.
func quote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
