"""callbot bench: many concurrent replays through one switch, one audio server and one robot, scored."""
