package app

import "fmt"

// takeFronts gives each webapp instance of v its front port: from's for
// the same stanza and slot (the live version's, so nginx's config stays
// as it is), else a fresh one. from may be v itself, to fill in what it
// lacks. v.web must hold each stanza's instances.
func (m *Manager) takeFronts(v, from *version) error {
	for i, insts := range v.web {
		for k, in := range insts {
			if from != nil && k < len(from.web[i]) && from.web[i][k].front != 0 {
				in.front = from.web[i][k].front
				continue
			}
			if in.front != 0 {
				continue
			}
			f, err := m.ports.Take()
			if err != nil {
				return fmt.Errorf("front port of stanzas[%d] instance %d: %w", i, k+1, err)
			}
			in.front = f
		}
	}
	return nil
}

// releaseFronts frees v's front ports the app's live version does not use.
func (m *Manager) releaseFronts(v *version) {
	inUse := map[int]bool{}
	m.mu.Lock()
	if live := m.live[v.app]; live != nil {
		for _, insts := range live.web {
			for _, in := range insts {
				inUse[in.front] = true
			}
		}
	}
	m.mu.Unlock()
	for _, insts := range v.web {
		for _, in := range insts {
			if in.front != 0 && !inUse[in.front] {
				m.ports.Release(in.front)
			}
		}
	}
}
