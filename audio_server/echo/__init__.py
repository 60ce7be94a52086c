"""Echo rejection: the robot's own prompt, heard back through the line, never counts as the caller."""
