"""Formats: a record -> a document (echo JSON, HTML, HAR, curl), each a pure function of the record."""
