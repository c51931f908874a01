package main

// The operator's commands, in the order `keter --help` lists them.
func init() {
	register(command{"status", "[APP]", "show apps, versions, units, last deploys", cmdStatus})
	register(command{"deploy", "FILE.keter", "deploy a bundle and wait until it is live", cmdDeploy})
	register(command{"rollback", "APP", "bring back the app's previous bundle", cmdRollback})
	register(command{"restart", "APP", "replace the live version with its own bundle, no request failing", cmdRestart})
	register(command{"maintenance", "on|off APP", "answer 503 for the app's hosts, or serve it again", cmdMaintenance})
	register(command{"canary", "APP --percent N", "send a share of new clients to the app's next bundle; promote|abort", cmdCanary})
	register(command{"job", "run APP JOB", "run one of the app's scheduled jobs now", cmdJob})

	register(command{"env", "set|unset APP", "list (keter env APP), set or unset the app's variables", cmdEnv})
	register(command{"logs", "APP", "show the app's journal across versions", cmdLogs})
	register(command{"bundle", "DIR", "build NAME.keter from a folder", cmdBundle})
	register(command{"check", "FILE.keter", "validate a bundle without deploying it", cmdCheck})
	register(command{"postgres", "drop APP", "drop an app's database and role", cmdPostgres})
}
