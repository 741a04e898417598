"""The compensation tests' world: the same signed-in county as the precision-control tests (a county bureau's
administrator, the province commission's administrator, another county's administrator, a clinician), reused; and
the settlement tests' county of 20 institutions for a year (`world`) and the app on a port for card clicks
(`served`)."""

from tests.compensation.test_settlement import served, world  # noqa: F401  (fixtures, found by name)
from tests.precision_control.conftest import pc_world  # noqa: F401  (a fixture, found by name)
