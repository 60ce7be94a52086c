"""The robot's subcommands: call and check."""
