package bundle

// MaintenancePage is where a bundle may ship its own maintenance page,
// relative to the bundle's root: while the app is in maintenance, nginx
// answers every request for its hosts with this file (503). It must be
// self-contained: its images and styles would get the 503 as well.
const MaintenancePage = "config/maintenance.html"

// MaxMaintenancePage bounds the page keter copies out of a bundle.
const MaxMaintenancePage = 1 << 20
