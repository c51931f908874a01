// Package fleet deploys one bundle to several keter hosts over the
// system's OpenSSH client, a few hosts at a time, and is the hosts' side
// of that conversation too.
//
// The operator's side (Deploy, Rollback, Status, Maintenance) runs `ssh
// DEST keter remote …` once per host; each host's keter CLI (Remote)
// takes the app's rollout lock there, reads bundles from stdin, hands
// them to the local daemon exactly as `keter deploy` does and answers one
// JSON line per step. There is no agent of our own on the network: ssh
// carries everything, and a host decides live or failed by itself.
//
// fleet must not build a shell command line from unquoted strings (see
// quote) nor pass a destination ssh could read as an option.
package fleet
