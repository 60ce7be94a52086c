"""Start-up checks before the first call: each failure says what is wrong and how to fix it.

They run in the robot's gevent thread (they use the ESL client). Checks that depend on an
earlier one (the password needs a reachable socket) are skipped when it failed, so the report
names the root cause once.
"""

from __future__ import annotations

import http.client
import urllib.error
import urllib.request
from dataclasses import dataclass
from urllib.parse import urlsplit

import gevent

from callbot.config import AudioServerSettings, Settings
from callbot.robot.esl.client import EslAuthError, EslClient, EslConnectError, EslError

CONF = "freeswitch_conf/README.md"
_PASSWORD_FIX = "set CALLBOT_ESL_PASSWORD (or [esl].password) to the password in event_socket.conf.xml"


@dataclass(frozen=True)
class CheckResult:
    """One check: its name, whether it passed, what was seen, and the fix when it failed."""

    name: str
    ok: bool
    detail: str
    fix: str = ""


class StartupCheckError(RuntimeError):
    """One or more start-up checks failed; the message lists every failure with its fix."""

    def __init__(self, failures: list[CheckResult]) -> None:
        self.failures = failures
        super().__init__("start-up checks failed:\n" + format_results(failures))


def format_results(results: list[CheckResult]) -> str:
    """One line per check, plus a ``fix:`` line under each failure."""
    lines = []
    for r in results:
        lines.append(f"  [{'ok' if r.ok else 'FAIL'}] {r.name}: {r.detail}")
        if not r.ok and r.fix:
            lines.append(f"         fix: {r.fix}")
    return "\n".join(lines)


def require_ok(results: list[CheckResult]) -> None:
    """Raise StartupCheckError listing every failed check, or return quietly."""
    failures = [r for r in results if not r.ok]
    if failures:
        raise StartupCheckError(failures)


def healthz_url(settings: AudioServerSettings) -> str:
    """The audio server's ``/healthz`` as the switch reaches it: from public_url, else host and port."""
    if settings.public_url:
        parts = urlsplit(settings.public_url)
        scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
        return f"{scheme}://{parts.netloc}/healthz"
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    return f"http://{host}:{settings.port}/healthz"


def _http_status(url: str, timeout: float) -> tuple[int | None, str]:
    """(HTTP status, "") or (None, why it failed); never raises, so the thread pool logs nothing."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (the URL is our setting)
            return response.status, ""
    except urllib.error.HTTPError as exc:
        return exc.code, ""
    except (OSError, ValueError, http.client.HTTPException) as exc:  # InvalidURL too: a bad public_url
        return None, str(getattr(exc, "reason", exc))


def check_audio_server(url: str, timeout: float = 3.0) -> CheckResult:
    """``GET /healthz`` must answer 200 (run in the hub's thread pool so other greenlets keep going)."""
    fix = ("start it with `callbot audio-server --host H --port P`, and set [audio_server].public_url to the "
           "ws:// address FreeSWITCH dials")
    status, error = gevent.get_hub().threadpool.apply(_http_status, (url, timeout))
    if status is None:
        return CheckResult("audio_server", False, f"{url} is unreachable ({error})", fix)
    if status != 200:
        return CheckResult("audio_server", False, f"{url} answered HTTP {status}", fix)
    return CheckResult("audio_server", True, f"{url} answered 200")


def check_switch(client: EslClient) -> list[CheckResult]:
    """Checks over a connected client: mod_audio_stream must be loaded."""
    try:
        answer = client.api("module_exists mod_audio_stream").strip()
    except EslError as exc:
        return [CheckResult("mod_audio_stream", False, f"`module_exists` failed: {exc}", "see the ESL check")]
    if answer == "true":
        return [CheckResult("mod_audio_stream", True, "loaded")]
    return [CheckResult(
        "mod_audio_stream", False, f"`module_exists mod_audio_stream` answered {answer!r}",
        f"build and install it ({CONF}), run `fs_cli -x 'load mod_audio_stream'`, and add "
        '<load module="mod_audio_stream"/> to autoload_configs/modules.conf.xml')]


def run_checks(settings: Settings, client: EslClient | None = None) -> list[CheckResult]:
    """Every start-up check; with ``client`` (already connected) the ESL connection is reused."""
    results: list[CheckResult] = []
    where = f"{settings.esl.host}:{settings.esl.port}"
    if client is None and not settings.esl.password:
        results.append(CheckResult("esl_password", False, "no ESL password is configured", _PASSWORD_FIX))
    elif client is None:
        try:
            client = EslClient(settings.esl, reconnect=False)
            client.connect()
        except EslConnectError as exc:
            results.append(CheckResult("esl_reachable", False, str(exc),
                                       f"start FreeSWITCH with mod_event_socket listening on {where} ({CONF})"))
            client = None
        except EslAuthError as exc:
            results += [CheckResult("esl_reachable", True, f"{where} answered"),
                        CheckResult("esl_password", False, str(exc), _PASSWORD_FIX)]
            client = None
        else:
            results += _switch_results(where, client)
            client.stop()
    else:
        results += _switch_results(where, client)
    results.append(check_audio_server(healthz_url(settings.audio_server)))
    return results


def _switch_results(where: str, client: EslClient) -> list[CheckResult]:
    return [CheckResult("esl_reachable", True, f"{where} answered"),
            CheckResult("esl_password", True, "accepted"), *check_switch(client)]
