#!/bin/sh
# keter: give a version folder ($1) to the app's user before each start,
# taking the owner of its state directory ($2), which systemd has already
# handed to that user: keter unpacked the folder as root, and a dynamic
# user's UID is only known once systemd allocated it. The unit runs it with
# full privileges (ExecStartPre). Nothing to do when the owner is right, so
# an automatic restart costs one stat of both (one process: each costs the
# start a few ms); -h: never follow a link.
o=$(stat -c %u:%g -- "$1" "$2") && [ "${o%%
*}" = "${o#*
}" ] || exec chown -R -h --reference="$2" -- "$1"
