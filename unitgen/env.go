package unitgen

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/keter-systemd/keter/config"
)

// layer is where a variable's final value came from; public layers go to
// Environment=, the rest to the root-only file.
type layer int

const (
	layerAppRoot layer = iota // public
	layerPort                 // public
	layerGlobal
	layerPlugin
	layerForward
	layerStanza
	layerOperator // `keter env set`: the app's, not the bundle's
)

func (l layer) public() bool { return l <= layerPort }

type envVal struct {
	value string
	from  layer
}

// envInput is what the environment is computed from.
type envInput struct {
	web        bool
	port       int
	portVars   []string
	appRoot    string
	global     map[string]string
	plugin     map[string]string
	forward    []string
	lookupEnv  func(string) (string, bool)
	stanzaEnv  map[string]string
	stanzaName string
	operator   map[string]string
}

// environment applies Keter's precedence, lowest layer first so that each
// higher layer overwrites.
func environment(in envInput) (map[string]envVal, error) {
	env := map[string]envVal{}
	var errs []error
	set := func(k, v string, from layer, what string) {
		if err := checkVar(k, v); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", what, err))
			return
		}
		env[k] = envVal{v, from}
	}
	if in.appRoot != "" { // webapps, and a release step that borrows one
		set("APPROOT", in.appRoot, layerAppRoot, "APPROOT")
	}
	if in.web {
		p := strconv.Itoa(in.port)
		set("PORT", p, layerPort, "PORT")
		for _, k := range in.portVars {
			set(k, p, layerPort, "port-env-vars")
		}
	}
	for _, k := range sortedKeys(in.global) {
		set(k, in.global[k], layerGlobal, "global env")
	}
	for _, k := range sortedKeys(in.plugin) {
		set(k, in.plugin[k], layerPlugin, "plugin env")
	}
	for _, k := range in.forward {
		if in.lookupEnv == nil {
			continue
		}
		// Keter skips names missing from its own environment.
		if v, ok := in.lookupEnv(k); ok {
			set(k, v, layerForward, "forward-env")
		} else if err := checkVar(k, ""); err != nil {
			errs = append(errs, fmt.Errorf("forward-env: %w", err))
		}
	}
	for _, k := range sortedKeys(in.stanzaEnv) {
		set(k, in.stanzaEnv[k], layerStanza, in.stanzaName+" env")
	}
	for _, k := range sortedKeys(in.operator) {
		if err := CheckOperatorVar(k, in.operator[k], in.portVars); err != nil {
			errs = append(errs, fmt.Errorf("operator env (keter env): %w", err))
			continue
		}
		set(k, in.operator[k], layerOperator, "operator env (keter env)")
	}
	return env, errors.Join(errs...)
}

// ErrReservedVar means an operator variable keter sets itself.
var ErrReservedVar = errors.New("keter sets this variable itself")

// MaxOperatorValue bounds one operator value, in bytes.
const MaxOperatorValue = 32 << 10

// CheckOperatorVar checks a variable of the operator's layer: a valid
// name and value, not PORT, APPROOT or one of portVars (the port-env-vars
// names), which keter owns: the app would listen on the wrong port or
// build wrong links.
func CheckOperatorVar(k, v string, portVars []string) error {
	if err := checkVar(k, v); err != nil {
		return err
	}
	if len(v) > MaxOperatorValue {
		return fmt.Errorf("variable %s: value is longer than %d bytes", k, MaxOperatorValue)
	}
	switch {
	case k == "PORT" || k == "APPROOT":
		return fmt.Errorf("variable %s: %w (it cannot be overridden)", k, ErrReservedVar)
	case slices.Contains(portVars, k):
		return fmt.Errorf("variable %s: %w: it is one of the bundle's port-env-vars (it cannot be overridden)", k, ErrReservedVar)
	}
	return nil
}

// checkVar accepts what systemd accepts: a name of [A-Za-z0-9_] not
// starting with a digit, and a UTF-8 value without NUL.
func checkVar(k, v string) error {
	if k == "" {
		return errors.New("empty variable name")
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c == '_' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || i > 0 && c >= '0' && c <= '9') {
			return fmt.Errorf("variable name %q: only letters, digits and _ (not first) are allowed", k)
		}
	}
	if !utf8.ValidString(v) {
		return fmt.Errorf("variable %s: value is not valid UTF-8", k)
	}
	if strings.IndexByte(v, 0) >= 0 {
		return fmt.Errorf("variable %s: value contains a NUL byte", k)
	}
	return nil
}

// split places each final variable in exactly one place.
func split(env map[string]envVal) (public []string, secret map[string]string) {
	secret = map[string]string{}
	for _, k := range sortedKeys(env) {
		if v := env[k]; v.from.public() {
			public = append(public, k+"="+v.value)
		} else {
			secret[k] = v.value
		}
	}
	return public, secret
}

// EnvFile renders variables in systemd's EnvironmentFile syntax: one
// KEY="VALUE" per variable, sorted, with \ " ` $ escaped inside the double
// quotes. Newlines stay literal, which systemd keeps inside quotes.
func EnvFile(vars map[string]string) []byte {
	var b strings.Builder
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "`", "\\`", `$`, `\$`)
	for _, k := range sortedKeys(vars) {
		b.WriteString(k)
		b.WriteString(`="`)
		b.WriteString(r.Replace(vars[k]))
		b.WriteString("\"\n")
	}
	return []byte(b.String())
}

// AppRoot is Keter's APPROOT: http(s)://HOST[:PORT] with the external port
// when it is not the scheme's default.
func AppRoot(host string, ssl bool, g *config.Config) string {
	scheme, port, def := "http", 80, 80
	if g != nil && g.ExternalHTTPPort != 0 {
		port = g.ExternalHTTPPort
	}
	if ssl {
		scheme, port, def = "https", 443, 443
		if g != nil && g.ExternalHTTPSPort != 0 {
			port = g.ExternalHTTPSPort
		}
	}
	if port == def {
		return scheme + "://" + host
	}
	return scheme + "://" + host + ":" + strconv.Itoa(port)
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
