"""The runtime file: where a running server really listens, for `echo-server health`.

A health check that rebuilt the address from ECHO_* variables would miss a
server started with flags (`--port 9000`, `--port 0`, `--ui-prefix /x/`). So
the server writes what it bound, after binding, to a small JSON file
(`--runtime-file`), and the check reads it. The file is replaced atomically,
so a reader never sees half of it, and removed on a clean stop, but only by
the server that wrote it.
"""

from __future__ import annotations

import json
import os
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

# Probes answer from memory; a server that takes longer is not healthy.
PROBE_TIMEOUT_SECONDS = 3.0


class RuntimeFileError(Exception):
    """The runtime file is missing or unreadable; the message says which and why."""


@dataclass(frozen=True)
class Probe:
    """What one health request found: 200 and the route, or the reason it failed."""

    ok: bool
    url: str
    detail: str


def probe_host(host: str) -> str:
    """The address a local check connects to: a wildcard bind answers on loopback."""
    host = host.strip("[]")
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def describe(pid: int, host: str, port: int, prefix: str, echo_url: str, inspector_url: str,
             version: str) -> dict[str, Any]:
    base = f"http://{probe_host(host)}:{port}{prefix}"
    return {
        "pid": pid,
        "version": version,
        "url": echo_url,
        "inspector": inspector_url,
        "livez": f"{base}livez",
        "healthz": f"{base}healthz",
    }


def write(path: str, info: dict[str, Any]) -> None:
    """Replace the file at `path` with `info`, atomically (a temporary file, then rename)."""
    folder = os.path.dirname(os.path.abspath(path))
    handle, temporary = tempfile.mkstemp(prefix=".echo-server-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump(info, out)
            out.write("\n")
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise


def read(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as source:
            info = json.load(source)
    except FileNotFoundError:
        raise RuntimeFileError(f"no runtime file at {path}: is the server running, with the same "
                               "--runtime-file (or ECHO_RUNTIME_FILE)?") from None
    except (OSError, ValueError) as exc:
        raise RuntimeFileError(f"cannot read the runtime file {path}: {exc}") from None
    if not isinstance(info, dict) or not all(isinstance(info.get(k), str) for k in ("livez", "healthz")):
        raise RuntimeFileError(f"the runtime file {path} does not say where the server listens")
    return info


def remove(path: str, pid: int) -> None:
    """Remove the file if this process wrote it: a newer server may have replaced it since."""
    try:
        with open(path, encoding="utf-8") as source:
            owner = json.load(source).get("pid")
    except (OSError, ValueError, AttributeError):
        return
    if owner == pid:
        try:
            os.unlink(path)
        except OSError:
            pass


def probe(url: str, timeout: float = PROBE_TIMEOUT_SECONDS) -> Probe:
    """GET `url`; ok only for a 200."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (a URL this server wrote)
            return Probe(response.status == 200, url, f"answered {response.status}")
    except urllib.error.HTTPError as error:
        with error:
            return Probe(False, url, f"answered {error.code}{_reason(error.read())}")
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        return Probe(False, url, f"cannot be reached: {reason}")


def _reason(body: bytes) -> str:
    # /healthz names the store's trouble; one line of it is enough for `docker inspect`.
    try:
        doc = json.loads(body)
        detail = doc.get("store", {}).get("detail") or doc.get("error")
    except (ValueError, AttributeError):
        return ""
    return f": {' '.join(str(detail).split())}" if detail else ""
