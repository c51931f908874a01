// Package nginx owns keter's front door: it renders nginx configuration
// from the apps' stanzas (a pure function, golden-tested), checks it with
// `nginx -t`, installs it atomically and reloads nginx through systemd.
//
// In managed mode keter runs its own nginx as the transient unit
// keter-nginx.service with a whole nginx.conf under ROOT/etc/nginx; in
// system mode it writes one http-level include file (by default
// /etc/nginx/conf.d/keter.conf) and reloads the system's nginx.service.
//
// Every value that comes from a bundle is validated and quoted here again,
// even though the bundle package validates too: a config nginx did not test
// is never installed, and a value that could add a directive is refused.
//
// What nginx cannot express and is refused with ErrUnsupported: Keter's
// middleware other than `headers` and `autohead` (basic-auth, local,
// rate-limiter, jsonp, method-override, accept-override), and
// rewrite-request/rewrite-response rules whose regex uses more than five
// groups, or whose header is Host, Content-Length or Transfer-Encoding.
// Rewrite rules use PCRE, not Keter's POSIX regex, and a rewrite-response
// rule sees only the first value of a header that the backend repeats.
//
// Safety of Apply: managed mode tests the whole new nginx.conf from a temp
// file beside the real one, then renames it. In system mode nginx.conf
// includes our file through a glob we do not own, so the new include is
// renamed into place, the system config tested with `nginx -t`, and the
// previous file restored if nginx refuses it; nginx is not reloaded in
// that window, and Apply calls are serialized. A successful reload job
// means nginx got the signal: a failure nginx -t cannot see (a port taken
// by another program) leaves nginx on its old config, logged in journald.
//
// Managed mode's catch-all server is the default_server of each listener
// (unknown hosts get 404, the health check answers on any host). System
// mode's catch-all does not claim default_server, which Debian's
// sites-enabled/default already holds: with that site enabled it answers
// unknown hosts; disable it and keter's catch-all (conf.d is included
// first) answers them with 404.
//
// This package must not decide which app owns a host (the core does) nor
// talk to D-Bus itself: it uses the small Units interface.
package nginx
