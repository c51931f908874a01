package config

import (
	"reflect"
	"strings"
)

// reflectYAMLKeys lists the top-level yaml keys of a struct type, so the
// unknown-key warning can never drift from the fields.
func reflectYAMLKeys(v any) []string {
	t := reflect.TypeOf(v)
	var keys []string
	for i := 0; i < t.NumField(); i++ {
		tag := t.Field(i).Tag.Get("yaml")
		name, _, _ := strings.Cut(tag, ",")
		if name != "" && name != "-" {
			keys = append(keys, name)
		}
	}
	return keys
}
