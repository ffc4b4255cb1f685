#!/bin/sh
touch "$TESTDIR/ran"
printf 'Content-Type: text/plain\n\nran\n'
