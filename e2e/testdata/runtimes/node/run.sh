#!/bin/sh
# As a Keter bundle would start it: the working directory is the bundle.
exec node app.js
