"""SQL queries over the caller's own datasets: guard, executor, results."""
