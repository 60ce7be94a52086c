"""callbot: the shared core (settings, event schema, ESL protocol, stream URL and markers) under every part."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("callbot")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"
