#!/bin/sh
echo "something went wrong" >&2
printf 'Content-Type: text/plain\n\nok\n'
