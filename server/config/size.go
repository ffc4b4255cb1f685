package config

import (
	"fmt"
	"strconv"
	"strings"
)

// Size is a byte count written in a config as an integer or as a string
// such as "64KiB", "32MiB", "1GB".
type Size int64

// UnmarshalTOML accepts an integer or a string with a unit.
func (s *Size) UnmarshalTOML(v any) error {
	switch x := v.(type) {
	case int64:
		if x < 0 {
			return fmt.Errorf("size %d is negative", x)
		}
		*s = Size(x)
		return nil
	case string:
		n, err := ParseSize(x)
		if err != nil {
			return err
		}
		*s = Size(n)
		return nil
	default:
		return fmt.Errorf("a size must be an integer or a string like \"64KiB\", not %s", tomlKind(v))
	}
}

var sizeUnits = []struct {
	suffix string
	mult   int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30},
	{"KB", 1000}, {"MB", 1000 * 1000}, {"GB", 1000 * 1000 * 1000},
	{"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30},
	{"B", 1},
}

// ParseSize parses "512", "64KiB", "32MiB", "1GB" (KiB = 1024, KB = 1000,
// a bare K/M/G is binary as in nginx).
func ParseSize(str string) (int64, error) {
	t := strings.TrimSpace(str)
	mult := int64(1)
	for _, u := range sizeUnits {
		if len(t) > len(u.suffix) && strings.EqualFold(t[len(t)-len(u.suffix):], u.suffix) {
			mult = u.mult
			t = strings.TrimSpace(t[:len(t)-len(u.suffix)])
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 || t == "" {
		return 0, fmt.Errorf("invalid size %q (want e.g. 1048576, \"64KiB\" or \"32MiB\")", str)
	}
	if n > (1<<62)/mult {
		return 0, fmt.Errorf("size %q is too large", str)
	}
	return n * mult, nil
}

// Rate is a number of bytes per second, written in a config as an integer
// or as a size per second such as "1KiB/s"; "" and 0 mean off.
type Rate int64

// UnmarshalTOML accepts an integer (bytes per second) or "SIZE/s".
func (r *Rate) UnmarshalTOML(v any) error {
	switch x := v.(type) {
	case int64:
		if x < 0 {
			return fmt.Errorf("rate %d is negative", x)
		}
		*r = Rate(x)
		return nil
	case string:
		n, err := ParseRate(x)
		if err != nil {
			return err
		}
		*r = Rate(n)
		return nil
	default:
		return fmt.Errorf("a rate must be a string like \"1KiB/s\", not %s", tomlKind(v))
	}
}

// tomlKind names a decoded TOML value's type in the user's words, not
// Go's ("[]interface {}" means nothing to someone editing a config).
func tomlKind(v any) string {
	switch v.(type) {
	case []any, []map[string]any:
		return "a list"
	case map[string]any:
		return "a table"
	case bool:
		return "true/false"
	case int64, float64:
		return "a number"
	default:
		return "a date or time"
	}
}

// ParseRate parses "", "0", "512/s", "1KiB/s" (bytes per second).
func ParseRate(s string) (int64, error) {
	t := strings.TrimSpace(s)
	if t == "" || t == "0" {
		return 0, nil
	}
	size, ok := strings.CutSuffix(t, "/s")
	if !ok {
		return 0, fmt.Errorf("invalid rate %q (want e.g. \"1KiB/s\")", s)
	}
	n, err := ParseSize(size)
	if err != nil {
		return 0, fmt.Errorf("invalid rate %q (want e.g. \"1KiB/s\")", s)
	}
	return n, nil
}
