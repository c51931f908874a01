// Command keter deploys web apps as systemd units behind nginx.
package main

import "os"

var version = "dev"

func main() {
	os.Exit(run(os.Args[1:]))
}
