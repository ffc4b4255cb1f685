#!/bin/sh
printf 'Content-Type: text/plain\nSet-Cookie: other=1; Path=/\n'
[ -n "$QUERY_STRING" ] && printf 'X-Replace-Session: %s\n' "$QUERY_STRING"
printf '\nsession=%s|%s\n' "${HTTP_SESSION-unset}" "$(env | grep -c ^HTTP_SESSION=)"
