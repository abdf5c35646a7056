"""Views over the collected state: Prometheus metrics and the HTTP API."""
