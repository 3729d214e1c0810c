#!/bin/sh
# Stands in for the test suite when configure did not find cmocka.
echo "cmocka not found: install libcmocka-dev and rerun configure" >&2
exit 1
