package app

import "fmt"

// Front ports. nginx proxies each webapp stanza to its front ports, one
// upstream server each, and the port map sends each front to an
// instance's own port. A stanza gets fronts for at least minFronts
// instances, the ones beyond its instances being spares the map sends to
// its instances in turn: a new version with more or fewer instances (up
// to the most the stanza ever had fronts for) then changes only the map,
// never nginx's config, so it needs no reload. Fronts are kept across
// versions and only grow.

// minFronts is how many fronts a webapp stanza has at least.
const minFronts = 4

// takeFronts gives each webapp instance of v its front port and v its
// spares: from's for the same stanza, in order (the live version's, so
// nginx's config stays as it is), then fresh ones. from may be v itself,
// to fill in what it lacks. v.web must hold each stanza's instances.
// Spares are taken only while three quarters of the port ranges are
// free: they save a reload, not a deploy.
func (m *Manager) takeFronts(v, from *version) error {
	if v.spare == nil {
		v.spare = map[int][]int{}
	}
	for i, insts := range v.web {
		var have []int
		if from != nil {
			have = from.frontsOf(i)
		}
		// Fronts from before spares existed: keep what v has.
		for k, in := range insts {
			if k >= len(have) && in.front != 0 {
				have = append(have, in.front)
			}
		}
		for len(have) < len(insts) {
			f, err := m.ports.Take()
			if err != nil {
				return fmt.Errorf("front port of stanzas[%d] instance %d: %w", i, len(have)+1, err)
			}
			have = append(have, f)
		}
		for len(have) < minFronts && m.ports.plenty() {
			f, err := m.ports.Take()
			if err != nil {
				break
			}
			have = append(have, f)
		}
		for k, in := range insts {
			in.front = have[k]
		}
		v.spare[i] = have[len(insts):]
	}
	m.takeCanaryFronts(v, from)
	return nil
}

// frontsOf is stanza i's fronts: its instances', then its spares.
func (v *version) frontsOf(i int) []int {
	var out []int
	for _, in := range v.web[i] {
		if in.front != 0 {
			out = append(out, in.front)
		}
	}
	return append(out, v.spare[i]...)
}

// releaseFronts frees v's front ports the app's live version does not use.
func (m *Manager) releaseFronts(v *version) {
	inUse := map[int]bool{}
	m.mu.Lock()
	if live := m.live[v.app]; live != nil {
		for i := range live.web {
			for _, f := range append(live.frontsOf(i), live.canary[i]...) {
				inUse[f] = true
			}
		}
	}
	m.mu.Unlock()
	for i := range v.web {
		for _, f := range append(v.frontsOf(i), v.canary[i]...) {
			if !inUse[f] {
				m.ports.Release(f)
			}
		}
	}
}
