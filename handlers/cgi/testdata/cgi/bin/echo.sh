#!/bin/sh
# Echoes the body; the length it was told comes back in a header.
printf 'Content-Type: application/octet-stream\nX-Content-Length: %s\n\n' "$CONTENT_LENGTH"
exec head -c "${CONTENT_LENGTH:-0}"
