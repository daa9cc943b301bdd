"""Capture: a WSGI request -> one typed `RequestRecord`, parsed once with explicit limits."""
