package main

import "testing"

func TestPortList(t *testing.T) {
	for _, c := range []struct {
		ports, fronts map[int][]int
		want          string
	}{
		{nil, nil, "-"},
		{map[int][]int{0: {43126}}, map[int][]int{0: {43125}}, "web0 43126 (front 43125)"},
		{map[int][]int{2: {43127}, 0: {43126}}, nil, "web0 43126, web2 43127"},
		{map[int][]int{0: {43126, 43128}}, map[int][]int{0: {43125, 43127}}, "web0 43126, 43128 (fronts 43125, 43127)"},
	} {
		if got := portList(c.ports, c.fronts); got != c.want {
			t.Errorf("portList(%v, %v) = %q, want %q", c.ports, c.fronts, got, c.want)
		}
	}
}
