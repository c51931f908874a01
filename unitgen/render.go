package unitgen

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
)

// Render writes properties one per line as NAME (DBUS-SIGNATURE) VALUE, in
// order, for golden files and logs. Byte slices print as quoted strings.
func Render(props []sddbus.Property) string {
	var b strings.Builder
	for _, p := range props {
		fmt.Fprintf(&b, "%s (%s) %s\n", p.Name, p.Value.Signature(), renderValue(reflect.ValueOf(p.Value.Value())))
	}
	return b.String()
}

func renderValue(v reflect.Value) string {
	switch v.Kind() {
	case reflect.String:
		return strconv.Quote(v.String())
	case reflect.Bool:
		return strconv.FormatBool(v.Bool())
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return strconv.FormatInt(v.Int(), 10)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return strconv.FormatUint(v.Uint(), 10)
	case reflect.Slice:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			return strconv.Quote(string(v.Bytes()))
		}
		parts := make([]string, v.Len())
		for i := range parts {
			parts[i] = renderValue(v.Index(i))
		}
		return "[" + strings.Join(parts, ", ") + "]"
	case reflect.Struct:
		parts := make([]string, v.NumField())
		for i := range parts {
			parts[i] = v.Type().Field(i).Name + ": " + renderValue(v.Field(i))
		}
		return "{" + strings.Join(parts, ", ") + "}"
	case reflect.Interface, reflect.Pointer:
		if v.IsNil() {
			return "nil"
		}
		return renderValue(v.Elem())
	}
	return fmt.Sprintf("%v", v.Interface())
}
