"""simswitch-load: what the emulator itself costs."""
