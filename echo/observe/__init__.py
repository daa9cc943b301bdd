"""Observe: what happens after each answer: the recorder, the access log and the metrics."""
