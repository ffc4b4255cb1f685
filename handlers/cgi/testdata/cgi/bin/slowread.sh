#!/bin/sh
# Reads its body 64 KiB at a time with pauses, writing nothing until the end.
n=0
while [ $n -lt 10 ]; do
  dd bs=65536 count=1 status=none of=/dev/null
  n=$((n+1))
  sleep 0.3
done
printf 'Content-Type: text/plain\n\nread\n'
