print("Content-Type: text/plain")
print()
print("py ok")
