"""Scenarios: the declarative call script in TOML, its intents, and the bundled examples."""
