#!/bin/sh
# Prints the CGI environment the script was given as an HTML table.
# Everything from the request is escaped before it reaches the page.
esc() {
	sed -e 's/&/\&amp;/g' -e 's/</\&lt;/g' -e 's/>/\&gt;/g' -e 's/"/\&quot;/g' -e "s/'/\&#39;/g"
}

printf 'Content-Type: text/html; charset=utf-8\r\n'
printf 'Cache-Control: no-store\r\n\r\n'
cat <<'HTML'
<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>CGI environment</title>
<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}
th,td{border:1px solid #ccc;padding:.2em .5em;text-align:left;vertical-align:top;font-family:monospace}</style>
</head><body>
<h1>CGI environment</h1>
<p>What <code>cgi-bin/env.sh</code> was started with, one variable a row.</p>
<table>
<tr><th>Variable</th><th>Value</th></tr>
HTML
env | LC_ALL=C sort | esc | sed -e 's|^\([A-Za-z_][A-Za-z0-9_]*\)=\(.*\)$|<tr><th>\1</th><td>\2</td></tr>|'
cat <<'HTML'
</table>
</body></html>
HTML
