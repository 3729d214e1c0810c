# Manual pages: the mmheap command, the library API and the drop-in malloc.
dist_man_MANS = man/mmheap.1 man/mmheap.3 man/mmheap-malloc.3
