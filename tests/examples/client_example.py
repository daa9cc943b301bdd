import urllib.request

from echo.client import EchoClient

echo = EchoClient("http://127.0.0.1:8080")  # auth=("user", "pass") for --ui-auth; ui_prefix="/_/"
job = echo.new_bin()                        # its own URLs, queries and clear

urllib.request.urlopen(job.url("/hooks/orders?attempt=1"), timeout=10).close()  # what your code sends
first = job.wait_for("path:/hooks/orders", timeout=10)
assert first["request"]["args"] == {"attempt": ["1"]}

urllib.request.urlopen(job.url("/hooks/orders?attempt=2"), timeout=10).close()
retry = job.wait_for("path:/hooks/orders", after=first["id"])  # the next one, not the first again
assert retry["request"]["args"] == {"attempt": ["2"]}

job.assert_received("path:/hooks/orders", count=2)
job.clear()                                 # this bin only
