"""Values: a dataset's fields prepared for converting JSON and text (layouts), a row key in a
path, a PATCH body's changes, and stored values rendered as JSON."""
