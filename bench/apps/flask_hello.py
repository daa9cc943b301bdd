"""The framework's ceiling: a bare Flask app that answers "Hello, World!".

Echo cannot be faster than Flask on waitress doing nothing, so its req/s over
this app's says how much of the framework's budget Echo's own work spends.
It accepts the same methods and path as the benchmark's workloads and never
reads the body (waitress has already buffered it).
"""

from __future__ import annotations

from flask import Flask

app = Flask(__name__)


@app.route("/anything", methods=["GET", "POST"])
def hello() -> str:
    return "Hello, World!"
