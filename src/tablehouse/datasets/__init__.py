"""Datasets: a schema defined over the API becomes a real, versioned table."""
