"""Hostile input: schemathesis over the whole OpenAPI, and targeted abuse of each surface."""
