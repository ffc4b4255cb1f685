import html, os, urllib.parse
q = urllib.parse.parse_qs(os.environ.get("QUERY_STRING", ""))
print("Content-Type: text/html; charset=utf-8")
print()
print("<p>%s, %s!</p>" % (html.escape(os.environ.get("GREETING", "Hi")), html.escape(q.get("name", ["world"])[0])))
