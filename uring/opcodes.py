"""io_uring opcodes (include/uapi/linux/io_uring.h) and their stat names."""
from __future__ import annotations

NOP = 0
READV = 1
WRITEV = 2
FSYNC = 3
READ_FIXED = 4
WRITE_FIXED = 5
ASYNC_CANCEL = 14
FALLOCATE = 17
OPENAT = 18
CLOSE = 19
STATX = 21
READ = 22
WRITE = 23
RENAMEAT = 35
UNLINKAT = 36
MKDIRAT = 37
LINKAT = 39
FTRUNCATE = 55

FSYNC_DATASYNC = 1          # IORING_FSYNC_DATASYNC
AT_FDCWD = -100
AT_EMPTY_PATH = 0x1000
AT_REMOVEDIR = 0x200
AT_SYMLINK_NOFOLLOW = 0x100
STATX_BASIC_STATS = 0x07FF
STATX_DIOALIGN = 0x2000

#: Operation kinds as they appear in stats, by opcode. Fixed and vectored
#: variants count with their plain kind so stats read the same on both backends.
KIND = {
    NOP: "nop", READV: "read", WRITEV: "write", READ: "read", WRITE: "write",
    READ_FIXED: "read", WRITE_FIXED: "write", FSYNC: "fsync", FALLOCATE: "fallocate",
    OPENAT: "openat", CLOSE: "close", STATX: "statx", RENAMEAT: "renameat",
    UNLINKAT: "unlinkat", FTRUNCATE: "ftruncate", ASYNC_CANCEL: "cancel",
    MKDIRAT: "mkdirat", LINKAT: "linkat",
}

#: Opcodes the ring needs from the kernel; the rest have a synchronous fallback.
REQUIRED = (NOP, READ, WRITE, READV, WRITEV, FSYNC, ASYNC_CANCEL)
