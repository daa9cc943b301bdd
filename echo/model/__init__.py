"""The bottom floor: records, ids, HTTP vocabulary and redaction.

Nothing here imports Flask, werkzeug's WSGI layer, a store client or any
other floor of the package; every other floor may import it.
"""
