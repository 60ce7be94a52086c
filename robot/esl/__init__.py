"""The robot's Event Socket client (greenswitch, subclassed), its commands and event routing."""
