"""GET a URL with requests; proxy and CA come from the environment (`shield env`).
Prints the body, then the status on a line of its own (as `curl -w '\\n%{http_code}'`)."""

import sys

import requests

r = requests.get(sys.argv[1], timeout=30)
print(r.text)
print(r.status_code)
