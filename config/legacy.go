package config

import (
	"errors"
	"fmt"
)

// legacyListen holds Keter 0.x's listener keys: top-level host, port and
// ssl. The Haskell Keter reads them (its V04 format) when listeners is
// absent and turns them into one plain listener plus, with ssl, one TLS
// listener without chain certificates. Only that mapping is copied here.
type legacyListen struct {
	Host *string    `yaml:"host"`
	Port *int       `yaml:"port"`
	SSL  *legacyTLS `yaml:"ssl"`
}

type legacyTLS struct {
	Host        *string `yaml:"host"`
	Port        *int    `yaml:"port"`
	Key         string  `yaml:"key"`
	Certificate string  `yaml:"certificate"`
	Session     bool    `yaml:"session"`
}

// legacyKeys are the top-level keys legacyListen reads.
var legacyKeys = []string{"host", "port", "ssl"}

func (l legacyListen) given() bool { return l.Host != nil || l.Port != nil || l.SSL != nil }

// listeners converts the keys as Keter's V04-to-V10 conversion does:
// host defaults to "*", port to 80; ssl's host to "*", its port to 443,
// and it needs both key and certificate. Relative paths are resolved
// later, against the config file's folder, like every listener's.
func (l legacyListen) listeners() ([]Listener, error) {
	var errs []error
	plain := Listener{Host: "*", Port: 80}
	if l.Host != nil && *l.Host != "" {
		plain.Host = *l.Host
	}
	if l.Port != nil {
		plain.Port = *l.Port
	}
	if plain.Port < 1 || plain.Port > 65535 {
		errs = append(errs, fmt.Errorf("port: %d is not a TCP port", plain.Port))
	}
	out := []Listener{plain}
	if s := l.SSL; s != nil {
		tls := Listener{Host: "*", Port: 443, Certificate: s.Certificate, Key: s.Key, Session: s.Session}
		if s.Host != nil && *s.Host != "" {
			tls.Host = *s.Host
		}
		if s.Port != nil {
			tls.Port = *s.Port
		}
		if tls.Port < 1 || tls.Port > 65535 {
			errs = append(errs, fmt.Errorf("ssl.port: %d is not a TCP port", tls.Port))
		}
		if s.Certificate == "" || s.Key == "" {
			errs = append(errs, errors.New("ssl: certificate and key are both required (Keter 0.x's TLS listener)"))
		}
		out = append(out, tls)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}
