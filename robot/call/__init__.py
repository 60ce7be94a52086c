"""One call: its states, its events, its record and timeline."""
