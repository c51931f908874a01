package fleet

import (
	"bufio"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"unicode"
)

// ErrBadDest means a destination cannot be handed to ssh.
var ErrBadDest = errors.New("bad host")

// CheckDest refuses what ssh would read as an option or what is not one
// word: a DEST is an ssh_config alias, [user@]host or
// ssh://[user@]host[:port].
func CheckDest(d string) error {
	if _, err := destArgs(d); err != nil {
		return err
	}
	return nil
}

// destArgs is how DEST goes on ssh's command line, after "--" for the
// host. ssh parses aliases and [user@]host itself; an ssh:// URI keter
// takes apart into -l USER -p PORT HOST, because OpenSSH (9.2) refuses
// an IPv6 address in one (ssh://deploy@[2001:db8::1]:22), and that is the
// one spelling where an IPv6 address and a port stay unambiguous.
func destArgs(d string) ([]string, error) {
	if err := checkWord(d); err != nil {
		return nil, err
	}
	if !strings.HasPrefix(d, "ssh://") {
		return []string{"--", d}, nil
	}
	u, err := url.Parse(d)
	if err != nil || u.Host == "" || u.Hostname() == "" || u.Opaque != "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("%w %q: want ssh://[user@]host[:port]", ErrBadDest, d)
	}
	var args []string
	if u.User != nil {
		if _, has := u.User.Password(); has || u.User.Username() == "" {
			return nil, fmt.Errorf("%w %q: want ssh://[user@]host[:port] (no password)", ErrBadDest, d)
		}
		args = append(args, "-l", u.User.Username())
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("%w %q: bad port %q", ErrBadDest, d, p)
		}
		args = append(args, "-p", p)
	}
	if strings.HasPrefix(u.Hostname(), "-") {
		return nil, fmt.Errorf("%w %q: host starts with '-'", ErrBadDest, d)
	}
	return append(args, "--", u.Hostname()), nil
}

// checkWord refuses a DEST ssh would take for an option or more than one
// word.
func checkWord(d string) error {
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
