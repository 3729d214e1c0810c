# Examples: built with the library, copied from by users.
noinst_PROGRAMS += examples/persist_demo
examples_persist_demo_SOURCES = examples/persist_demo.c
examples_persist_demo_LDADD = libmmheap.la
