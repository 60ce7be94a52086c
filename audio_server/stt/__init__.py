"""Streaming Whisper: the sans-I/O segment transcriber, its decode queue, engine and asyncio shell."""
