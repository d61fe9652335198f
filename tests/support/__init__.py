"""Helpers shared by the test modules: how to run the CLI, make releases and models, script a hostile
server, validate schemas. Test modules import from here, never from each other
(tests/test_layout_of_tests.py checks it); pytest fixtures live in tests/conftest.py and tests/fixtures/."""
