from pathlib import Path

import pytest

from libs import settings
from libs.settings import HostdSettings, PlacerSettings, SettingsError, load

REPO = Path(__file__).resolve().parents[3]


def test_configuration_doc_is_current():
    assert (REPO / "docs" / "configuration.md").read_text() == settings.markdown(), \
        "run `make docs` to regenerate docs/configuration.md"


def test_defaults_work_locally():
    s = load(PlacerSettings, {})
    assert s.common.nats_url == "nats://127.0.0.1:4222" and s.port == 8701


def test_env_overrides_and_types():
    s = load(HostdSettings, {"NOOPS_HOST_ID": "h9", "NOOPS_HOST_CPUS": "1.5", "NOOPS_CLUSTER": "x"})
    assert (s.host_id, s.cpus, s.common.cluster) == ("h9", 1.5, "x")


def test_random_page_cost_must_be_positive():
    assert load(PlacerSettings, {}).common.db_random_page_cost == 1.1
    with pytest.raises(SettingsError, match="NOOPS_DB_RANDOM_PAGE_COST must be above 0"):
        load(PlacerSettings, {"NOOPS_DB_RANDOM_PAGE_COST": "0"})


def test_bad_value_is_a_clear_error():
    with pytest.raises(SettingsError, match="NOOPS_HOST_CPUS='lots' is not a valid float"):
        load(HostdSettings, {"NOOPS_HOST_CPUS": "lots"})


@pytest.mark.parametrize("text,want", [
    pytest.param("", {}, id="empty"),
    pytest.param("rack=r1, zone=z1", {"rack": "r1", "zone": "z1"}, id="two"),
])
def test_parse_labels(text, want):
    assert settings.parse_labels(text) == want


def test_parse_labels_rejects_garbage():
    with pytest.raises(SettingsError):
        settings.parse_labels("rack")


def test_the_usage_timeout_must_be_positive():
    from libs.settings import GatewaySettings
    assert load(GatewaySettings, {}).usage_timeout_s == 1.0
    with pytest.raises(SettingsError, match="NOOPS_GATEWAY_USAGE_TIMEOUT_S must be above 0"):
        load(GatewaySettings, {"NOOPS_GATEWAY_USAGE_TIMEOUT_S": "0"})


def test_announce_busy_share_is_a_share():
    from libs.settings import RegistrySettings
    assert load(RegistrySettings, {}).announce_busy_share == 0.125
    with pytest.raises(SettingsError, match="NOOPS_REGISTRY_ANNOUNCE_BUSY_SHARE must be in"):
        load(RegistrySettings, {"NOOPS_REGISTRY_ANNOUNCE_BUSY_SHARE": "1.5"})


def test_report_batches_in_flight_is_bounded():
    from libs.settings import RegistrySettings
    assert load(RegistrySettings, {}).report_batches_in_flight == 2
    with pytest.raises(SettingsError, match="NOOPS_REGISTRY_REPORT_BATCHES_IN_FLIGHT must be in \\[1, 6\\], not 0"):
        load(RegistrySettings, {"NOOPS_REGISTRY_REPORT_BATCHES_IN_FLIGHT": "0"})
