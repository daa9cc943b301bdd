"""The web floor: the only importers of Flask and of WSGI plumbing (dispatch, the echo handler,
CORS and security headers, the inspector)."""
