import pydantic
import pytest

from libs.appspec import AppSpec
from libs.constraints import ConstraintError, parse


@pytest.mark.parametrize("raw", [
    pytest.param(["hostname", "UNIQUE"], id="unique"),
    pytest.param(["rack", "CLUSTER", "r1"], id="cluster-value"),
    pytest.param(["rack", "CLUSTER"], id="cluster"),
    pytest.param(["rack", "GROUP_BY"], id="group-by"),
    pytest.param(["rack", "GROUP_BY", "3"], id="group-by-n"),
    pytest.param(["zone", "MAX_PER", "2"], id="max-per"),
    pytest.param(["hostname", "LIKE", "h[0-9]+"], id="like"),
    pytest.param(["hostname", "UNLIKE", "h1"], id="unlike"),
])
def test_valid(raw):
    assert parse(raw).operator == raw[1]


@pytest.mark.parametrize("raw,needle", [
    pytest.param(["hostname"], "is [", id="too-short"),
    pytest.param(["a", "b", "c", "d"], "is [", id="too-long"),
    pytest.param(["hostname", "SOMETIMES"], "unknown operator 'SOMETIMES'", id="unknown-operator"),
    pytest.param(["host name", "UNIQUE"], "not a valid attribute", id="bad-attribute"),
    pytest.param(["hostname", "UNIQUE", "x"], "UNIQUE takes no value", id="unique-value"),
    pytest.param(["zone", "MAX_PER"], "MAX_PER needs a number", id="max-per-missing"),
    pytest.param(["zone", "MAX_PER", "-1"], "whole number", id="max-per-negative"),
    pytest.param(["zone", "MAX_PER", "99999999999"], "whole number", id="max-per-absurd"),
    pytest.param(["hostname", "LIKE", "("], "not a valid regular expression", id="bad-regex"),
    pytest.param(["hostname", "LIKE"], "needs a regular expression", id="like-missing"),
])
def test_invalid(raw, needle):
    with pytest.raises(ConstraintError, match=None) as err:
        parse(raw)
    assert needle in str(err.value)


def test_app_spec_names_the_constraint():
    with pytest.raises(pydantic.ValidationError) as err:
        AppSpec.model_validate({"id": "w", "image": "i", "constraints": [["hostname", "UNIQUE"], ["z", "NOPE"]]})
    assert err.value.errors()[0]["loc"] == ("constraints", 1)


@pytest.mark.parametrize("strategy,ok", [
    pytest.param({"minimum_health_capacity": 0.5, "maximum_over_capacity": 0.2}, True, id="fractions"),
    pytest.param({"minimum_health_capacity": 1.5}, False, id="mhc-above-1"),
    pytest.param({"maximum_over_capacity": -0.1}, False, id="moc-negative"),
    pytest.param({"progress_deadline_s": 0}, False, id="deadline-zero"),
    pytest.param({"surge": 1}, False, id="unknown-knob"),
])
def test_upgrade_strategy(strategy, ok):
    spec = {"id": "w", "image": "i", "upgrade_strategy": strategy}
    if ok:
        assert AppSpec.model_validate(spec).upgrade_strategy.progress_deadline_s == 600
    else:
        with pytest.raises(pydantic.ValidationError):
            AppSpec.model_validate(spec)
