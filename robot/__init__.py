"""The robot: ESL call control, call sessions, scenarios, campaigns and the replay command."""
