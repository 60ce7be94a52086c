"""The audio server: mod_audio_stream WebSocket in, VAD, barge-in, transcripts and AMD events out."""
