#!/usr/bin/env python3
"""A small file system whose reads fail on purpose, served through the kernel's FUSE device
directly (no libfuse), so that `swiftpar hash` meets real failing system calls.

    faulty_fs.py MOUNTPOINT      (root; serves until the mount goes, e.g. `umount MOUNTPOINT`)

What it holds:
  ok          "hello\\n"
  listing/    100 files f000..f099 of "x\\n"; listing the directory fails with EIO after 50
  broken      3 MiB; a read past its first MiB fails with EIO
  again       4 KiB; every read answers EAGAIN
"""
import errno, os, struct, sys

mountpoint = sys.argv[1]
device = os.open("/dev/fuse", os.O_RDWR)
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
options = f"fd={device},rootmode=40000,user_id=0,group_id=0,allow_other".encode()
if libc.mount(b"faultyfs", mountpoint.encode(), b"fuse.faultyfs", 6, options) != 0:  # nosuid, nodev
    sys.exit(f"faulty_fs.py: mount failed: {os.strerror(ctypes.get_errno())}")

DIRECTORY, REGULAR = 0o040000, 0o100000
LISTED_BEFORE_FAILING = 50
# inode: (kind, contents or size)
nodes = {1: ("dir", None), 2: ("file", b"hello\n"), 3: ("dir", None), 4: ("broken", 3 << 20), 5: ("again", 4096)}
children = {1: [("ok", 2), ("listing", 3), ("broken", 4), ("again", 5)],
            3: [(f"f{i:03d}", 100 + i) for i in range(100)]}
for i in range(100):
    nodes[100 + i] = ("file", b"x\n")


def attributes(inode):
    kind, data = nodes[inode]
    if kind == "dir":
        mode, size, links = DIRECTORY | 0o755, 4096, 2
    else:
        mode, size, links = REGULAR | 0o644, len(data) if kind == "file" else data, 1
    # fuse_attr: ino size blocks atime mtime ctime, their nanoseconds, mode nlink uid gid rdev blksize flags
    return struct.pack("<QQQQQQIIIIIIIIII", inode, size, (size + 511) // 512, 0, 0, 0, 0, 0, 0,
                       mode, links, 0, 0, 0, 4096, 0)


def answer(unique, error=0, payload=b""):
    os.write(device, struct.pack("<IiQ", 16 + len(payload), -error, unique) + payload)


def entries(listing, offset, room):
    """fuse_dirent records from `offset`, as many as fit in `room` bytes (at most 10)."""
    out = b""
    for index in range(offset, len(listing)):
        name, inode = listing[index]
        record = struct.pack("<QQII", inode, index + 1, len(name), 4 if nodes[inode][0] == "dir" else 8) + name.encode()
        record += b"\0" * (-len(record) % 8)
        if len(out) + len(record) > room or index - offset >= 10:
            break
        out += record
    return out


while True:
    try:
        request = os.read(device, 1 << 18)
    except OSError as error:
        if error.errno == errno.ENODEV:  # unmounted
            break
        if error.errno in (errno.EINTR, errno.ENOENT):
            continue
        raise
    length, opcode, unique, inode = struct.unpack_from("<IIQQ", request, 0)
    body = request[40:length]
    if opcode == 26:  # INIT: protocol 7.31, no optional features
        _, _, readahead, _ = struct.unpack_from("<IIII", body, 0)
        answer(unique, 0, struct.pack("<IIIIHHIIHHI", 7, 31, readahead, 0, 16, 12, 65536, 1, 0, 0, 0) + b"\0" * 28)
    elif opcode == 1:  # LOOKUP
        name = body.split(b"\0", 1)[0].decode()
        found = [child for child_name, child in children.get(inode, []) if child_name == name]
        if found:
            answer(unique, 0, struct.pack("<QQQQII", found[0], 0, 1, 1, 0, 0) + attributes(found[0]))
        else:
            answer(unique, errno.ENOENT)
    elif opcode in (2, 36, 42):  # FORGET, INTERRUPT, BATCH_FORGET: no answer
        pass
    elif opcode == 3:  # GETATTR
        answer(unique, 0, struct.pack("<QII", 1, 0, 0) + attributes(inode))
    elif opcode in (14, 27):  # OPEN (direct I/O, so every read reaches us), OPENDIR
        answer(unique, 0, struct.pack("<QII", inode, 1 if opcode == 14 else 0, 0))
    elif opcode == 15:  # READ
        _, offset, size = struct.unpack_from("<QQI", body, 0)
        kind, data = nodes[inode]
        if kind == "file":
            answer(unique, 0, data[offset:offset + size])
        elif kind == "broken":
            answer(unique, errno.EIO) if offset >= 1 << 20 else answer(unique, 0, b"z" * max(0, min(size, data - offset)))
        elif kind == "again":
            answer(unique, errno.EAGAIN)
        else:
            answer(unique, errno.EISDIR)
    elif opcode == 28:  # READDIR
        _, offset, size = struct.unpack_from("<QQI", body, 0)
        if inode == 3 and offset >= LISTED_BEFORE_FAILING:
            answer(unique, errno.EIO)
        elif inode in children:
            listing = children[inode][:LISTED_BEFORE_FAILING] if inode == 3 else children[inode]
            answer(unique, 0, entries(listing, offset, size))
        else:
            answer(unique, errno.ENOTDIR)
    elif opcode in (18, 25, 29):  # RELEASE, FLUSH, RELEASEDIR
        answer(unique, 0)
    elif opcode == 17:  # STATFS
        answer(unique, 0, struct.pack("<QQQQQIIII", 1000, 0, 0, 200, 0, 4096, 255, 4096, 0) + b"\0" * 24)
    elif opcode == 38:  # DESTROY
        answer(unique, 0)
        break
    else:
        answer(unique, errno.ENOSYS)
