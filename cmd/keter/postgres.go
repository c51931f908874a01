package main

import (
	"context"
	"fmt"
)

func cmdPostgres(ctx context.Context, args []string) int {
	fs := newFlags("postgres", "drop [-c CONFIG] --yes APP",
		"drop: drops the database and role the postgres plugin made for APP, and its\nentry in ROOT/etc/postgres.yaml. All of the app's data is lost. keter never\ndoes this by itself: removing an app keeps its database. The app must not be\ndeployed (remove its bundle first); the running keter does the drop.")
	cfgPath := configFlag(fs)
	yes := fs.Bool("yes", false, "really drop the data")
	pos, code, ok := parseArgs(fs, args, 2, 2)
	if !ok {
		return code
	}
	if pos[0] != "drop" {
		return usageError(fs, fmt.Sprintf("unknown postgres command %q", pos[0]))
	}
	if !*yes {
		return usageError(fs, fmt.Sprintf("dropping the database of %q deletes its data: add --yes", pos[1]))
	}
	_, c, err := connect(*cfgPath)
	if err != nil {
		return fail("%v", err)
	}
	if err := c.DropDatabase(ctx, pos[1]); err != nil {
		return fail("%v", err)
	}
	fmt.Printf("%s: database and role dropped\n", pos[1])
	return exitOK
}
