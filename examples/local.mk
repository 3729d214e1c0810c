# Examples: built with the library, copied from by users.
noinst_PROGRAMS += examples/persist_demo
examples_persist_demo_SOURCES = examples/persist_demo.c
examples_persist_demo_LDADD = libmmheap.la

noinst_PROGRAMS += examples/kv_server
examples_kv_server_SOURCES = examples/kv_server.c
# -no-install: a real executable with an rpath to .libs rather than a libtool
# wrapper script, so bench/snapshot.sh times the server's own start.
examples_kv_server_LDFLAGS = $(AM_LDFLAGS) -no-install
examples_kv_server_LDADD = libmmheap.la

noinst_PROGRAMS += examples/graph
examples_graph_SOURCES = examples/graph.c
examples_graph_LDADD = libmmheap.la
