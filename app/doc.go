// Package app is keter's core: one worker per app turns incoming-folder
// events into unit and proxy changes (unpack, plugins, the bundle's
// release step, start new, wait until ready, switch, drain, stop old) and re-adopts running versions after keter
// restarts. It declares the small interfaces it needs (Units, Proxy,
// Databases) and never imports the adapters that implement them.
package app
