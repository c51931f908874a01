package main

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/keter-systemd/keter/app"
	"github.com/keter-systemd/keter/unitgen"
)

// envVars reads keter env set's variables: KEY=VALUE, or one KEY alone
// whose value is read from stdin (up to its end, one final newline
// dropped), so that a secret stays out of the command line, which every
// user of the host can read in /proc while keter env waits.
func envVars(args []string, secret bool, stdin io.Reader) ([]app.EnvVar, error) {
	var out []app.EnvVar
	fromStdin := ""
	for _, kv := range args {
		k, v, found := strings.Cut(kv, "=")
		switch {
		case k == "":
			return nil, fmt.Errorf("%q: want KEY=VALUE, or KEY alone to read its value from stdin", kv)
		case !found && fromStdin != "":
			return nil, fmt.Errorf("%s and %s: only one KEY may read its value from stdin", fromStdin, k)
		case !found:
			fromStdin = k
			data, err := io.ReadAll(io.LimitReader(stdin, unitgen.MaxOperatorValue+2))
			if err != nil {
				return nil, fmt.Errorf("reading the value of %s from stdin: %w", k, err)
			}
			v = strings.TrimSuffix(string(data), "\n")
			if len(v) > unitgen.MaxOperatorValue {
				return nil, fmt.Errorf("the value of %s on stdin is longer than %d bytes", k, unitgen.MaxOperatorValue)
			}
		}
		out = append(out, app.EnvVar{Name: k, Value: v, Secret: secret})
	}
	if len(out) == 0 {
		return nil, errors.New("no variable")
	}
	return out, nil
}
