"""Echo: an HTTP request/response inspector and echo server.

`create_app` (in `echo.app`) is the one place where settings, the history
store, the echo handler and the inspector are wired together. Importing the
package runs nothing: `create_app` and `static_folder` load `echo.app` only
when called, so the lower floors import without Flask.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .version import __version__

if TYPE_CHECKING:
    from flask import Flask

__all__ = ["__version__", "create_app", "static_folder"]


def create_app(config: Any = None, environ: Any = None) -> Flask:
    """Build the WSGI app: defaults, then ECHO_* environment, then `config` (see echo.app)."""
    from .app import create_app as build

    return build(config, environ)


def static_folder() -> str:
    """static/ as installed inside the package, or at the top of a source checkout."""
    from .app import static_folder as find

    return find()
