"""The compensation tests' world: the same signed-in county as the precision-control tests (a county bureau's
administrator, the province commission's administrator, another county's administrator, a clinician), reused."""

from tests.precision_control.conftest import pc_world  # noqa: F401  (a fixture, found by name)
