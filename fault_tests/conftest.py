"""The integration tests' servers and service, for the schema campaign."""

from integration_tests.conftest import backends, service

__all__ = ["backends", "service"]
