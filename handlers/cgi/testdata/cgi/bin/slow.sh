#!/bin/sh
# A background child in the same group, then a long wait: the handler must
# kill both.
sleep 100 &
echo $$ > "$TESTDIR/pgid.tmp" && mv "$TESTDIR/pgid.tmp" "$TESTDIR/pgid"
sleep 100
printf 'Content-Type: text/plain\n\ntoo late\n'
