// Package execsock is the small protocol `keter exec` speaks with the
// daemon, on a unix socket of its own next to keter's CLI socket
// (keter-exec.sock, root and the deploy group like keter.sock): HTTP
// cannot carry file descriptors, and handing over the caller's own
// stdin, stdout and stderr is what makes exec safe for the deploy group:
// keter never opens a terminal or a file on a caller's behalf, the command
// gets exactly what the caller already holds.
//
// The protocol, one connection per command:
//
//  1. The client sends one JSON line, {"app": NAME, "argv": [CMD, ARGS...]},
//     in a single sendmsg carrying SCM_RIGHTS with exactly three file
//     descriptors: its stdin, stdout and stderr, in that order.
//  2. The server answers with JSON lines: {"started": UNIT} once the
//     command runs, then one final line: {"done": true, "status": N} (exit
//     status N), {"done": true, "signal": S} (killed by signal S),
//     {"done": true, "stopped": true} (stopped at the caller's request) or
//     {"error": TEXT} (it could not run, or something failed).
//  3. The client may send {"stop": true} at any time (Ctrl-C): the server
//     stops the command and still sends the final line. A client that
//     goes away (its connection closes) stops the command too.
//
// The server learns who is calling from SO_PEERCRED and lets in root and
// members of the deploy group only; the handler decides what to run. This
// package knows nothing of apps or systemd.
package execsock
