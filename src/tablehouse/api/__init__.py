"""HTTP layer: error mapping, shared dependencies, middleware and router assembly."""
