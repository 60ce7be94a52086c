"""The Event Socket protocol, sans-I/O: framing, parsing and reply and job matching."""
