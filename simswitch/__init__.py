"""simswitch: an emulator of FreeSWITCH plus mod_audio_stream that speaks real ESL and WebSocket."""

from simswitch.server import SimSwitch
from simswitch.thread import SimSwitchThread
from simswitch.truth import CallTruth

__all__ = ["CallTruth", "SimSwitch", "SimSwitchThread"]
