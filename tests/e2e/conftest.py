from collections.abc import Iterator

import pytest

from devtools.cluster import ClusterConfig
from tests.support.platform import Platform


@pytest.fixture(scope="session")
def platform(cluster_cfg: ClusterConfig) -> Iterator[Platform]:
    p = Platform(cluster_cfg)
    p.start_all()
    try:
        yield p
    finally:
        p.stop_all()
