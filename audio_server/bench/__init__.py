"""Benchmarks of the audio server: pipeline cost, server streams per core, Whisper under load."""
