#!/bin/sh
while [ ! -e "$TESTDIR/release" ]; do sleep 0.02; done
printf 'Content-Type: text/plain\n\nok\n'
