"""Request bodies: decoding, spooling, and parsing JSON, NDJSON and CSV into runs of records."""
