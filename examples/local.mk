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

# C++17: the containers of include/mmheap.hpp.
noinst_PROGRAMS += examples/cxx_inventory
examples_cxx_inventory_SOURCES = examples/cxx_inventory.cc
examples_cxx_inventory_CXXFLAGS = $(AM_CXXFLAGS) -Wall -Wextra -std=gnu++17
examples_cxx_inventory_LDADD = libmmheap.la
