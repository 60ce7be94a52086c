"""simswitch: an emulator of FreeSWITCH plus mod_audio_stream that speaks real ESL and WebSocket."""
