# tests: owned by the test suite
