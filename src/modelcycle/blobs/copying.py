"""Copying a file into the local blob store, hashing the bytes as they are copied.

The blob's name was computed by an earlier read of the file; the copy hashes what it
reads again, so a file changed between the two reads is caught instead of being stored
under a name its bytes do not have.

Files of at least `DIRECT_MIN` bytes are written with ``O_DIRECT``, past the page
cache, while the next chunk is read and hashed on the calling thread. Buffered writes
make the kernel allocate and later write back a cache page per 4 KiB, a cost that on
some machines (virtual ones in particular) exceeds the disk's own: a 2 GiB file took
2.5-5 s of kernel time buffered and 1-1.5 s direct on the machine the benchmarks ran
on. A freshly added blob is seldom read soon, so caching it would also evict the
user's working set for nothing. Filesystems without ``O_DIRECT`` get buffered writes.
"""

from __future__ import annotations

import errno
import fcntl
import mmap
import os

import blake3

DIRECT_MIN = 64 << 20
_CHUNK = 8 << 20
_ALIGN = 4096  # direct writes need offsets, sizes and buffers aligned to the disk's block


def open_for_copy(path: str, size: int) -> tuple[int, bool]:
    """A new file at ``path`` (read-only once closed), and whether it writes direct."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o444)
    if size >= DIRECT_MIN and hasattr(os, "O_DIRECT"):
        # Switched on after the file is made: opening with O_DIRECT where a filesystem
        # has none would create the file, read-only, and then refuse to open it.
        try:
            fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_DIRECT)
            return fd, True
        except OSError as e:
            if e.errno != errno.EINVAL:  # EINVAL: this filesystem has no direct I/O
                os.close(fd)
                raise
    return fd, False


def copy_hashing(src: str | os.PathLike[str], fd_out: int, direct: bool) -> tuple[str, int]:
    """Copy the file ``src`` to ``fd_out``: the hex BLAKE3 digest of the bytes and their count."""
    fd_in = os.open(src, os.O_RDONLY)
    try:
        if direct:
            return _copy_pipelined(fd_in, fd_out)
        h = blake3.blake3()
        total = 0
        while chunk := os.read(fd_in, _CHUNK):
            h.update(chunk)
            write_all(fd_out, memoryview(chunk))
            total += len(chunk)
        return h.hexdigest(), total
    finally:
        os.close(fd_in)


def _copy_pipelined(fd_in: int, fd_out: int) -> tuple[str, int]:
    """Read and hash one chunk while a thread writes the previous one, direct."""
    from concurrent.futures import Future, ThreadPoolExecutor

    # Page-aligned buffers, as direct I/O needs; two, so one is read into while the
    # other is written from.
    buffers = [mmap.mmap(-1, _CHUNK), mmap.mmap(-1, _CHUNK)]
    h = blake3.blake3(max_threads=blake3.blake3.AUTO)
    total = 0
    writing: Future[None] | None = None
    with ThreadPoolExecutor(1) as writer:
        n = _CHUNK
        while n == _CHUNK:  # a short chunk is the end of the file
            view = memoryview(buffers[0])
            n = _fill(fd_in, view)
            if n == 0:
                break
            h.update(view[:n])
            if writing is not None:
                writing.result()
            writing = writer.submit(_write_direct, fd_out, view[:n])
            total += n
            buffers.reverse()
        if writing is not None:
            writing.result()
    return h.hexdigest(), total


def _fill(fd: int, view: memoryview) -> int:
    """Read into ``view`` until it is full or the file ends; the bytes read."""
    got = 0
    while got < len(view):
        n = os.readv(fd, [view[got:]])
        if n == 0:
            break
        got += n
    return got


def _write_direct(fd: int, view: memoryview) -> None:
    if len(view) % _ALIGN:
        _buffered(fd)  # the file's last, partial block: direct I/O cannot write it
    while view:
        try:
            view = view[os.write(fd, view) :]
        except OSError as e:
            # A filesystem that opens files for direct I/O but refuses this write (its
            # blocks are larger than the alignment used here): buffered from here on.
            if e.errno != errno.EINVAL or not fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT:
                raise
            _buffered(fd)


def _buffered(fd: int) -> None:
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_DIRECT)


def write_all(fd: int, view: memoryview) -> None:
    """Write all of ``view`` to ``fd`` (a write may take less than it is given)."""
    while view:
        view = view[os.write(fd, view) :]
