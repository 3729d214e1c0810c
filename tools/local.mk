# tools: the mmheap command (info, check, recover), installed with the
# library.  It reads heap metadata, so it is linked to the library's own
# objects rather than to the public libmmheap.
bin_PROGRAMS = tools/mmheap
tools_mmheap_SOURCES = tools/mmheap.c
tools_mmheap_LDADD = libmmheap-core.la
