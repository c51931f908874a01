package app

import (
	"fmt"
	"path/filepath"

	"github.com/fsnotify/fsnotify"
)

// watcher reports names of bundle files in the incoming folder that were
// created, written, renamed or removed; what happened is decided by
// looking at the file, so cp (many writes) and mv (one create) both work.
type watcher struct {
	w      *fsnotify.Watcher
	Names  chan string
	Errors <-chan error
	done   chan struct{}
}

func newWatcher(dir string) (*watcher, error) {
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("watching %s: %w", dir, err)
	}
	if err := fw.Add(dir); err != nil {
		fw.Close()
		return nil, fmt.Errorf("watching %s: %w", dir, err)
	}
	w := &watcher{w: fw, Names: make(chan string, 256), Errors: fw.Errors, done: make(chan struct{})}
	go w.pump()
	return w, nil
}

func (w *watcher) pump() {
	defer close(w.Names)
	for {
		select {
		case <-w.done:
			return
		case ev, ok := <-w.w.Events:
			if !ok {
				return
			}
			name := filepath.Base(ev.Name)
			if !isBundleFile(name) || ev.Op == fsnotify.Chmod {
				continue
			}
			select {
			case w.Names <- name:
			case <-w.done:
				return
			}
		}
	}
}

func (w *watcher) Close() error {
	close(w.done)
	return w.w.Close()
}
