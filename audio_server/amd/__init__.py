"""Answering-machine and beep detection: stages of the stream pipeline."""
