#!/bin/sh
echo "crashing on purpose" >&2
exit 3
