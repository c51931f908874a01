package config

import (
	"fmt"
	"time"

	"gopkg.in/yaml.v3"
)

// Duration is a Go duration written with its unit ("10m", "1h30m"); a
// bare number is refused, since Keter's numbers are microseconds.
type Duration time.Duration

// UnmarshalYAML reads a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode || n.Tag == "!!int" || n.Tag == "!!float" {
		return fmt.Errorf("line %d: must be a duration with its unit, such as 10m or 1h, found %q", n.Line, n.Value)
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: must be a duration with its unit, such as 10m or 1h, found %q", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}
