"""Where the API lives. Each domain router carries the whole prefix itself, so a route's
path is its full template (what metrics and logs label requests with)."""

API_PREFIX = "/api/v1"
