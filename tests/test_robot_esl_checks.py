"""Start-up checks against a scripted switch and a real HTTP /healthz on 127.0.0.1."""

from __future__ import annotations

import pytest
from gevent.pywsgi import WSGIServer

from callbot.config import AudioServerSettings, EslSettings, Settings
from callbot.robot.checks import StartupCheckError, healthz_url, require_ok, run_checks
from robot_esl_switch import free_port, switch  # noqa: F401 (switch is a fixture)


@pytest.fixture
def healthz():
    def app(environ, start_response):
        ok = environ["PATH_INFO"] == "/healthz"
        start_response("200 OK" if ok else "404 Not Found", [("Content-Type", "application/json")])
        return [b'{"status": "ok"}\n']

    server = WSGIServer(("127.0.0.1", 0), app, log=None)
    server.start()
    yield server.server_port
    server.stop()


def settings(esl_port: int, audio_port: int, password: str | None = "ClueCon") -> Settings:
    return Settings(esl=EslSettings(port=esl_port, password=password, connect_timeout_s=1.0),
                    audio_server=AudioServerSettings(host="0.0.0.0", port=audio_port))


def by_name(results):
    return {r.name: r for r in results}


def test_all_checks_pass(switch, healthz):
    switch.api["module_exists mod_audio_stream"] = "true"
    results = run_checks(settings(switch.port, healthz))
    assert [(r.name, r.ok) for r in results] == [("esl_reachable", True), ("esl_password", True),
                                                 ("mod_audio_stream", True), ("audio_server", True)]
    require_ok(results)
    assert "api module_exists mod_audio_stream" in switch.commands[0]


def test_module_missing_and_audio_server_down_both_reported_with_fixes(switch):
    switch.api["module_exists mod_audio_stream"] = "false"
    results = by_name(run_checks(settings(switch.port, free_port())))
    assert not results["mod_audio_stream"].ok
    assert "load mod_audio_stream" in results["mod_audio_stream"].fix
    assert not results["audio_server"].ok and "unreachable" in results["audio_server"].detail
    assert "callbot audio-server" in results["audio_server"].fix
    with pytest.raises(StartupCheckError) as err:
        require_ok(list(results.values()))
    text = str(err.value)
    assert "[FAIL] mod_audio_stream" in text and "[FAIL] audio_server" in text and "fix:" in text
    assert len(err.value.failures) == 2


def test_wrong_password_and_missing_password(switch, healthz):
    results = by_name(run_checks(settings(switch.port, healthz, password="nope")))
    assert results["esl_reachable"].ok and not results["esl_password"].ok
    assert "mod_audio_stream" not in results  # depends on a login
    assert "CALLBOT_ESL_PASSWORD" in results["esl_password"].fix
    results = by_name(run_checks(settings(switch.port, healthz, password=None)))
    assert not results["esl_password"].ok and "no ESL password" in results["esl_password"].detail
    assert "esl_reachable" not in results


def test_unreachable_switch(healthz):
    results = by_name(run_checks(settings(free_port(), healthz)))
    assert not results["esl_reachable"].ok and "connection refused" in results["esl_reachable"].detail
    assert results["audio_server"].ok


def test_healthz_non_200_is_a_failure(healthz):
    from callbot.robot.checks import check_audio_server

    result = check_audio_server(f"http://127.0.0.1:{healthz}/other")
    assert not result.ok and "HTTP 404" in result.detail


def test_healthz_url_from_public_url():
    assert healthz_url(AudioServerSettings(public_url="wss://audio.example:9443/x")) == \
        "https://audio.example:9443/healthz"
    assert healthz_url(AudioServerSettings(host="10.0.0.2", port=8080)) == "http://10.0.0.2:8080/healthz"
