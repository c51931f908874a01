package main

import (
	"fmt"
	"strings"

	"github.com/keter-systemd/keter/status"
	"github.com/keter-systemd/keter/unitgen"
	appusage "github.com/keter-systemd/keter/usage"
)

// describe lists the figures systemd counts, for people.
func describe(f appusage.Figures) string {
	var parts []string
	if v, ok := f.Get(unitgen.Memory); ok {
		parts = append(parts, "memory "+status.Bytes(v))
	}
	if v, ok := f.Get(unitgen.CPU); ok {
		parts = append(parts, "CPU "+status.CPU(v))
	}
	if v, ok := f.Get(unitgen.Tasks); ok {
		parts = append(parts, fmt.Sprintf("%d tasks", v))
	}
	for _, p := range []struct {
		what    string
		in, out unitgen.Figure
		a, b    string
	}{{"IO", unitgen.IORead, unitgen.IOWrite, "read", "written"}, {"IP", unitgen.IPIn, unitgen.IPOut, "in", "out"}} {
		in, okIn := f.Get(p.in)
		out, okOut := f.Get(p.out)
		if okIn || okOut {
			parts = append(parts, fmt.Sprintf("%s %s %s, %s %s", p.what, p.a, status.Bytes(in), p.b, status.Bytes(out)))
		}
	}
	if len(parts) == 0 {
		return "not counted"
	}
	return strings.Join(parts, ", ")
}

// appColumns are the list's MEMORY, CPU and TASKS of an app: its stanzas
// added up ("-" where nothing is counted).
func appColumns(a status.App) (mem, cpu, tasks string) {
	sum := func(fig unitgen.Figure) (uint64, bool) {
		var total uint64
		counted := false
		for _, s := range a.Usage {
			if v, ok := s.Get(fig); ok {
				total, counted = total+v, true
			}
		}
		return total, counted
	}
	mem, cpu, tasks = "-", "-", "-"
	if v, ok := sum(unitgen.Memory); ok {
		mem = status.Bytes(v)
	}
	if v, ok := sum(unitgen.CPU); ok {
		cpu = status.CPU(v)
	}
	if v, ok := sum(unitgen.Tasks); ok {
		tasks = fmt.Sprint(v)
	}
	return mem, cpu, tasks
}
