#!/bin/sh
# Writes a line every 0.3 s for about 2.4 s: busy, never silent for long.
printf 'Content-Type: text/plain\n\n'
i=0
while [ $i -lt 8 ]; do
  echo "line $i"
  i=$((i+1))
  sleep 0.3
done
