// Package e2e tests the keter binary end to end: run as a unit of the
// sandbox systemd with real nginx, it gets real bundles dropped into its
// incoming folder, and the tests check what an operator would see.
package e2e
