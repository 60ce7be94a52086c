"""Media: prompt playback, and the mod_audio_stream WebSocket client."""
