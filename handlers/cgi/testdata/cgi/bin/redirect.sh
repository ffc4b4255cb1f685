#!/bin/sh
printf 'Location: %s\n\n' "$PATH_INFO"
echo "this body is never sent"
