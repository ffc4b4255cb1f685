#!/bin/sh
printf 'Content-Type: text/plain\n\n'
echo "Hello from $SHOAL_NODE, you asked for ${PATH_INFO:-/} with query '${QUERY_STRING}'"
