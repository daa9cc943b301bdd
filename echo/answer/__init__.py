"""Answers: the controls that turn a request into a response plan, and the answer type."""
