"""`python -m echo` runs the same server as `echo-server`."""

from .cli import run

if __name__ == "__main__":
    run()
