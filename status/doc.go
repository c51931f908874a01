// Package status serves what an operator reads about a running keter: a
// server-rendered HTML page, a JSON API behind it and Prometheus /metrics
// on a TCP address (127.0.0.1 by default), and the same API plus the
// operator's actions (wait for a deploy, rollback, drop a database) on a
// root-only unix socket that the keter CLI talks to. Client is that CLI
// side. It reads the core and the units; it never changes an app except
// through the core's own entry points. Over TCP it refuses apps, and shows
// the apps' log lines only to those journald would show them to (see
// logs.go); it never shows an app's environment.
package status
