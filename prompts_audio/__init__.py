"""The bundled prompt recordings: <language>/<rate>/<name>.wav, the default `[prompts] dir`."""
