package nginx

import (
	"testing"
	"time"
)

func TestReloadGapGrowsWithParseCost(t *testing.T) {
	for _, c := range []struct{ parse, want time.Duration }{
		{0, MinReloadGap},
		{20 * time.Millisecond, MinReloadGap}, // a few apps
		{480 * time.Millisecond, 2880 * time.Millisecond},
	} {
		if got := reloadGap(c.parse); got != c.want {
			t.Errorf("reloadGap(%s) = %s, want %s", c.parse, got, c.want)
		}
	}
}
