#!/bin/sh
printf 'Content-Type: text/plain\n\nfirst\n'
read line < "$TESTDIR/fifo"
printf 'second\n'
