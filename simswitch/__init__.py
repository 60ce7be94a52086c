"""simswitch: an emulator of FreeSWITCH plus mod_audio_stream that speaks real ESL and WebSocket."""

from callbot.simswitch.server import SimSwitch
from callbot.simswitch.thread import SimSwitchThread
from callbot.simswitch.calls.truth import CallTruth

__all__ = ["CallTruth", "SimSwitch", "SimSwitchThread"]
