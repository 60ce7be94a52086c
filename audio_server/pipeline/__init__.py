"""The sans-I/O stream pipeline: reframe, VAD, segment, barge-in; bytes and stream time in, events out."""
