"""mmheap from Python: a small ctypes binding (standard library only).

    import mmheap
    with mmheap.open("data.heap", create=True) as h:
        buf = h.alloc(16)              # a writable memoryview of the block
        buf[:5] = b"hello"
        h.set_name(b"greeting", buf)
        h.commit()
    with mmheap.open("data.heap", readonly=True) as h:
        print(bytes(h.get(b"greeting")[:5]), h.names())

Blocks are memoryviews of format 'B' over the mapped heap, sized to the
block's usable size (mmh_usable_size), read-only when the heap is.  A view
is invalid once its heap is closed or the block freed: close() and free()
release the views this module handed out (using one then raises
ValueError), but a slice or other view made from them is not tracked and
must not be used afterwards (it would read unmapped or reused memory).
Store offsets (Heap.offset), not addresses, to find blocks again.

The library is $MMHEAP_LIB if set, else libmmheap found by
ctypes.util.find_library, else libmmheap.so.0.  See include/mmheap.h.
"""
import ctypes
import ctypes.util
import errno as _errno
import os
import weakref

MMH_CREATE, MMH_EXCL, MMH_SHARED, MMH_READONLY = 1, 2, 4, 8
MMH_RELOCATE, MMH_VOLATILE, MMH_HUGEPAGES = 16, 32, 64
MMH_NAME_MAX = 255


class MmheapError(OSError):
    """A failed mmheap call: errno and the library's reason (mmh_errmsg)."""


class mmh_config(ctypes.Structure):
    """struct mmh_config, field for field (tracker is a C enum: an int)."""
    _fields_ = [("size", ctypes.c_size_t), ("max_size", ctypes.c_size_t),
                ("flags", ctypes.c_uint), ("tracker", ctypes.c_int),
                ("base", ctypes.c_void_p), ("mode", ctypes.c_uint)]


_NAME_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p,
                            ctypes.c_void_p)
_P, _SZ, _U64 = ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint64
_PROTOS = {  # name: (restype, argtypes)
    "mmh_open": (_P, [ctypes.c_char_p, ctypes.POINTER(mmh_config)]),
    "mmh_close": (ctypes.c_int, [_P]),
    "mmh_commit": (ctypes.c_int, [_P]),
    "mmh_alloc": (_P, [_P, _SZ]),
    "mmh_free": (None, [_P, _P]),
    "mmh_usable_size": (_SZ, [_P, _P]),
    "mmh_root": (_P, [_P]),
    "mmh_set_root": (ctypes.c_int, [_P, _P]),
    "mmh_offset": (_U64, [_P, _P]),
    "mmh_at": (_P, [_P, _U64]),
    "mmh_name_set": (ctypes.c_int, [_P, ctypes.c_char_p, _P]),
    "mmh_name_get": (_P, [_P, ctypes.c_char_p]),
    "mmh_name_each": (ctypes.c_int, [_P, _NAME_FN, _P]),
    "mmh_errmsg": (ctypes.c_char_p, []),
}


def _load():
    path = (os.environ.get("MMHEAP_LIB") or ctypes.util.find_library("mmheap")
            or "libmmheap.so.0")
    lib = ctypes.CDLL(path, use_errno=True)
    for name, (restype, argtypes) in _PROTOS.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = restype, argtypes
    return lib


lib = _load()


def _call(fn, *args, fails=lambda r: r is None or r == -1):
    """Call fn with errno cleared; raise MmheapError where fails(result) and
    errno is set (calls such as mmh_at return 0 both for 0 and on error)."""
    ctypes.set_errno(0)
    r = fn(*args)
    err = ctypes.get_errno()
    if fails(r) and err:
        raise MmheapError(err, lib.mmh_errmsg().decode(errors="replace"))
    return r


class Heap:
    """An open heap; a context manager that closes it (committing a
    writable file heap).  path None: an anonymous heap."""

    def __init__(self, path=None, create=False, readonly=False, size=0,
                 max_size=0, flags=0):
        cfg = mmh_config(size=size, max_size=max_size, flags=flags
                         | (MMH_CREATE if create else 0)
                         | (MMH_READONLY if readonly else 0))
        self.readonly = bool(cfg.flags & MMH_READONLY)
        self._views = {}  # id(view) -> (weakref to view, address)
        p = None if path is None else os.fsencode(path)
        self._h = None
        self._h = _call(lib.mmh_open, p, ctypes.byref(cfg))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        if getattr(self, "_h", None):
            self.close()

    def _heap(self):
        if not self._h:
            raise ValueError("heap is closed")
        return self._h

    def close(self):
        """Release every view handed out, then close (mmh_close).  The heap
        is closed even when this raises."""
        if not self._h:
            return
        for ref, _ in list(self._views.values()):
            self._release(ref())
        h, self._h = self._h, None
        _call(lib.mmh_close, h)

    def commit(self):
        """Make the heap's current state durable (mmh_commit)."""
        _call(lib.mmh_commit, self._heap())

    # Views and addresses.
    def _view(self, addr):
        n = _call(lib.mmh_usable_size, self._heap(), addr, fails=lambda r: not r)
        v = memoryview((ctypes.c_char * n).from_address(addr)).cast("B")
        if self.readonly:
            v = v.toreadonly()
        key, views = id(v), self._views  # the callback holds no ref to self
        views[key] = (weakref.ref(v, lambda _: views.pop(key, None)), addr)
        return v

    def _release(self, v):
        if v is not None:
            self._views.pop(id(v), None)
            try:
                v.release()
            except BufferError:  # exported further (e.g. to numpy): left alone
                pass

    def _addr(self, block):
        """The address of a block given as a view from this heap or an
        offset (int)."""
        if isinstance(block, int):
            return _call(lib.mmh_at, self._heap(), block, fails=lambda r: not r)
        entry = self._views.get(id(block))
        if entry is None or entry[0]() is not block:
            raise TypeError("not an offset nor a block view of this heap")
        return entry[1]

    def offset(self, block):
        """The block's offset from the heap's base (mmh_offset): store this."""
        return _call(lib.mmh_offset, self._heap(), self._addr(block),
                     fails=lambda r: not r)

    def block(self, block):
        """A new view of the block at this offset (or this view's block)."""
        return self._view(self._addr(block))

    # Allocation.
    def alloc(self, n):
        """Allocate n bytes (mmh_alloc): a view of the block's usable size."""
        return self._view(_call(lib.mmh_alloc, self._heap(), n))

    def free(self, block):
        """Free the block (mmh_free); its view, if given, is released."""
        addr = self._addr(block)
        _call(lib.mmh_free, self._heap(), addr, fails=lambda r: True)
        if not isinstance(block, int):
            self._release(block)

    # Names.
    def names(self):
        """Every name (bytes) with the offset of the block it names."""
        found = []
        cb = _NAME_FN(lambda name, p, arg: found.append((name, p)) or 0)
        _call(lib.mmh_name_each, self._heap(), cb, None)
        return {name: _call(lib.mmh_offset, self._h, p, fails=lambda r: not r)
                for name, p in found}

    def get(self, name):
        """A view of the block named name (bytes), or None."""
        try:
            return self._view(_call(lib.mmh_name_get, self._heap(), name))
        except MmheapError as e:
            if e.errno == _errno.ENOENT:
                return None
            raise

    def set_name(self, name, block):
        """Name a block (a view or an offset); block None removes the name."""
        addr = None if block is None else self._addr(block)
        _call(lib.mmh_name_set, self._heap(), name, addr)


def open(path=None, **kwargs):
    """Open a heap file: mmheap.open(path, create=False, readonly=False,
    size=0, max_size=0, flags=0) -> Heap."""
    return Heap(path, **kwargs)
