"""The ``[campaign]`` section of the one settings object: ranges and forms checked with the key named, env vars,
a campaign's own overrides over it, and a TOML round trip that keeps per-outcome ``retry_after`` tables."""

from __future__ import annotations

import pytest

from callbot.config import CampaignSettings, ConfigError, Settings, _toml_value, load_settings, to_toml
from callbot.robot.campaign.settings import effective, read_settings_file


@pytest.mark.parametrize("values, words", [
    ({"ring_timeout_s": 5}, "campaign.ring_timeout_s: 5.0 must be >= 15"),
    ({"max_attempts": 0}, "campaign.max_attempts: 0 must be >= 1"),
    ({"retry_after": {"busy": -1}}, "campaign.retry_after.busy: -1.0 must be seconds, 0 or more"),
    ({"retry_after": {"vacation": 5}}, "campaign.retry_after.vacation: unknown key; keys are busy, no_answer"),
    ({"retry_after": 60}, "campaign.retry_after: expected a table such as { busy = 600 }"),
    ({"windows": ["weekdays 9-5"]}, "campaign.windows: ('weekdays 9-5',) must be calling windows: window"),
    ({"default_tz": "Mars/Olympus"}, "campaign.default_tz: 'Mars/Olympus' must be an IANA time zone"),
    ({"dial_template": "sofia/gw/{number},x"}, "campaign.dial_template: 'sofia/gw/{number},x' must be a dial string"),
    ({"dial_template": "sofia/gw/carrier"}, "campaign.dial_template: 'sofia/gw/carrier' must be a dial string"),
    ({"opt_out_dtmf": "9x"}, "campaign.opt_out_dtmf: '9x' must be DTMF keys only"),
    ({"calls_per_second": "fast"}, "campaign.calls_per_second: 'fast' is not a valid float"),
    ({"max_concurent": 3}, "unknown setting campaign.max_concurent; [campaign] has dial_template"),
])
def test_bad_values_are_refused_naming_the_source_and_key(values, words):
    with pytest.raises(ConfigError) as err:
        effective(Settings(), values, "x.toml")
    assert str(err.value).startswith("x.toml: ") and words in str(err.value), str(err.value)


def test_a_partial_retry_table_keeps_the_other_outcomes_and_cps_is_capped_by_the_switch():
    merged = effective(Settings(), {"retry_after": {"busy": 60}, "windows": ["mon-sun 00:00-24:00"]})
    assert merged.retry_after == {**CampaignSettings().retry_after, "busy": 60.0}
    assert merged.windows == ("mon-sun 00:00-24:00",)
    assert CampaignSettings(calls_per_second=100, switch_sps=30).cps == 30
    assert effective(Settings(), {"dial_template": "loopback/{number}/{number}"}).dial_template.count("{number}") == 2


def test_the_global_file_then_env_then_the_campaign_own_overrides(tmp_path):
    path = tmp_path / "callbot.toml"
    path.write_text('[campaign]\nmax_attempts = 5\nretry_after = { machine = 60 }\ndefault_tz = "Europe/Paris"\n')
    env = {"CALLBOT_CAMPAIGN_MAX_CONCURRENT": "4", "CALLBOT_CAMPAIGN_RETRY_AFTER": "busy=30, no_answer=90",
           "CALLBOT_CAMPAIGN_WINDOWS": "mon-fri 08:00-12:00, mon-fri 14:00-18:00"}
    settings = load_settings(path, env=env)
    c = settings.campaign
    assert (c.max_attempts, c.max_concurrent, c.default_tz) == (5, 4, "Europe/Paris")
    assert c.retry_after == {**CampaignSettings().retry_after, "machine": 60.0, "busy": 30.0, "no_answer": 90.0}
    assert c.windows == ("mon-fri 08:00-12:00", "mon-fri 14:00-18:00")
    own = effective(settings, {"max_attempts": 2, "retry_after": {"failed": 10}}, "campaign c settings")
    assert (own.max_attempts, own.max_concurrent, own.retry_after["failed"], own.retry_after["machine"]) == (2, 4, 10, 60)
    with pytest.raises(ConfigError, match="^environment variable CALLBOT_CAMPAIGN_LEASE_S: campaign.lease_s: 0.0 must"):
        load_settings(env={"CALLBOT_CAMPAIGN_LEASE_S": "0"})
    with pytest.raises(ConfigError, match="CALLBOT_CAMPAIGN_RETRY_AFTER: campaign.retry_after: 'busy' is not a table"):
        load_settings(env={"CALLBOT_CAMPAIGN_RETRY_AFTER": "busy"})


def test_toml_renders_tables_as_inline_tables_and_reads_them_back(tmp_path):
    assert _toml_value({"busy": 60.0, "no answer": 5}) == '{ "busy" = 60.0, "no answer" = 5 }'
    settings = Settings().replace(**{"campaign.retry_after": {"busy": 45, "machine": 7200},
                                     "campaign.default_tz": "America/New_York", "campaign.opt_out_dtmf": "*9"})
    text = to_toml(settings, redact=False)
    assert 'retry_after = { "busy" = 45.0, "no_answer" = 3600.0, "failed" = 1800.0, "machine" = 7200.0, ' \
           '"interrupted" = 300.0 }' in text
    path = tmp_path / "out.toml"
    path.write_text(text)
    assert load_settings(path, env={}) == settings


def test_a_campaign_settings_file_holds_only_a_campaign_table(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[campaign]\nmax_attempts = 2\nretry_after = { busy = 60 }\n")
    assert read_settings_file(path) == {"max_attempts": 2, "retry_after": {"busy": 60}}
    path.write_text("[esl]\nport = 1\n")
    with pytest.raises(ConfigError, match="only a \\[campaign\\] table"):
        read_settings_file(path)
    with pytest.raises(ConfigError, match="settings file .* does not exist"):
        read_settings_file(tmp_path / "none.toml")
