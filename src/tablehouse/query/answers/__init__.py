"""What a query answers: rows collected into one JSON document, or streamed as CSV or
NDJSON (``results``), each value encoded the same way in every form (``encoding``)."""
