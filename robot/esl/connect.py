"""Opening the Event Socket's TCP connection: the socket options a robot needs, and errors that name the fix."""

from __future__ import annotations

import socket

import gevent.socket

from callbot.config import EslSettings
from callbot.robot.esl.errors import EslConnectError


def open_socket(settings: EslSettings) -> gevent.socket.socket:
    """A connected, blocking socket to ``settings.host:port``; EslConnectError says what to check."""
    where = f"{settings.host}:{settings.port}"
    try:
        sock = gevent.socket.create_connection((settings.host, settings.port), timeout=settings.connect_timeout_s)
    except ConnectionRefusedError:
        raise EslConnectError(f"cannot reach the Event Socket at {where}: connection refused. Is FreeSWITCH "
                              "running, with mod_event_socket listening there (freeswitch_conf/"
                              "autoload_configs/event_socket.conf.xml)? Check [esl].host and [esl].port."
                              ) from None
    except TimeoutError:
        raise EslConnectError(f"connecting to the Event Socket at {where} timed out after "
                              f"{settings.connect_timeout_s} s: check [esl].host and any firewall") from None
    except OSError as exc:
        raise EslConnectError(f"cannot reach the Event Socket at {where}: {exc}") from None
    sock.settimeout(None)
    tune_socket(sock, settings.keepalive_s)
    return sock


def tune_socket(sock: gevent.socket.socket, idle_s: float) -> None:
    """No Nagle delay (a uuid_break must leave at once); TCP keepalive, so a switch that vanished
    without a FIN (host down, cable cut) ends the connection."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    if hasattr(socket, "TCP_KEEPIDLE"):  # Linux; elsewhere the OS defaults apply
        idle = max(1, int(idle_s))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, idle)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, max(1, idle // 3))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)
