"""cffi API-mode builder for ``uring._uring_c``: io_uring over raw syscalls.

No liburing: ring setup, mmap of the SQ/CQ rings and SQE array, and every
head/tail access (acquire/release atomics) live in C. Python pays one cffi call
per *batch*: ``ur_prep`` writes one SQE without publishing it, ``ur_submit``
publishes all prepared SQEs with one ``io_uring_enter``, and ``ur_reap`` copies
up to M completions into caller arrays. Per-op statistics (ops, bytes and
errors by opcode; completion latency histogram) are kept in C at reap time so
the hot path in Python does no bookkeeping for them.

Compiled at install time via ``setup.py`` (``cffi_modules``).
"""
import os

from cffi import FFI

CDEF = r"""
#define UR_MAX_OPS 64
#define UR_HIST_BUCKETS 256
#define UR_CANCEL_BIT ...

struct ur_ring {
    int fd;
    unsigned sq_entries;
    unsigned cq_entries;
    unsigned features;
    unsigned max_slots;
    unsigned pending;              /* prepared, not yet submitted */
    uint64_t enter_calls;
    uint64_t sqes_submitted;
    uint64_t cqes_reaped;
    uint64_t cq_overflow;
    uint64_t cancel_cqes;          /* completions of internal cancels, consumed in C */
    uint64_t poll_cqes;            /* completions of the selector poll, consumed in C */
    unsigned poll_armed;           /* a poll on the selector's epoll fd is in the ring */
    unsigned poll_fired;           /* ...and it completed: the epoll fd has events */
    unsigned early;                /* pending SQEs that are submitted before the pass ends */
    unsigned early_min, early_max; /* ...its range (see ur_submit) */
    int64_t spin_budget;           /* the next spin's length (ns; 0: the full spin) */
    unsigned cpu_bound;            /* the last window's loop hardly waited (see ur_select) */
    uint64_t idle_ns;              /* time ur_select spent spinning or asleep */
    uint64_t win_start, win_idle;  /* the current window: its start and idle_ns then */
    uint64_t ops[UR_MAX_OPS];
    uint64_t bytes[UR_MAX_OPS];
    uint64_t errors[UR_MAX_OPS];
    uint64_t lat_hist[UR_HIST_BUCKETS];
    ...;
};

typedef struct {
    uint32_t mask;
    uint32_t blksize;
    uint32_t nlink;
    uint32_t mode;
    uint64_t ino;
    uint64_t size;
    uint64_t blocks;
    int64_t mtime_sec;
    uint32_t mtime_nsec;
    uint32_t dio_mem_align;
    uint32_t dio_offset_align;
    uint32_t dev_major;
    uint32_t dev_minor;
} ur_stat;

struct ur_ring *ur_new(void);
int ur_setup(struct ur_ring *r, unsigned entries, unsigned cq_entries, unsigned max_slots);
void ur_close(struct ur_ring *r);
void ur_free(struct ur_ring *r);

int ur_prep(struct ur_ring *r, unsigned op, int fd, uint64_t addr, uint32_t len,
            uint64_t off, uint32_t op_flags, uint64_t user_data, int buf_index);
int ur_prep_ex(struct ur_ring *r, unsigned op, int fd, uint64_t addr, uint32_t len,
               uint64_t off, uint32_t op_flags, uint64_t user_data, int buf_index,
               uint32_t splice_fd_in);
int ur_bind_prep(struct ur_ring *r, uintptr_t ns);
int ur_prep_batch(struct ur_ring *r, unsigned n, const uint8_t *ops, const int32_t *fds,
                  const uint64_t *addrs, const uint32_t *lens, const uint64_t *offs,
                  const uint64_t *user_data);
int ur_submit(struct ur_ring *r, unsigned min_complete);
int ur_arm_poll(struct ur_ring *r, int fd);
int ur_cancel_poll(struct ur_ring *r);
int ur_can_wait(struct ur_ring *r);
int ur_select(struct ur_ring *r, int block, int64_t timeout_ns, int64_t spin_ns, int epfd,
              uint32_t *slots, int32_t *res, unsigned max, int *epoll_ready);
int ur_unregister_eventfd(struct ur_ring *r);
int ur_reap(struct ur_ring *r, uint32_t *slots, int32_t *res, unsigned max);
unsigned ur_cq_ready(struct ur_ring *r);
unsigned ur_sq_space(struct ur_ring *r);

int ur_register_eventfd(struct ur_ring *r, int efd);
int ur_probe(struct ur_ring *r, uint8_t *supported, unsigned n);
int ur_register_buffers(struct ur_ring *r, uint64_t base, const uint32_t *sizes, unsigned count);
int ur_unregister_buffers(struct ur_ring *r);

int ur_eventfd(void);
int ur_eventfd_clear(int efd);

void *ur_alloc(size_t size, size_t align);
void ur_dealloc(void *p);

int ur_statx_fd(int fd, ur_stat *out);
int ur_statx_path(int dirfd, const char *path, int flags, ur_stat *out);
int ur_stat_decode(const void *raw, ur_stat *out);
unsigned ur_statx_raw_size(void);
int ur_fallocate(int fd, int mode, int64_t offset, int64_t len);
unsigned ur_hist_bucket(uint64_t ns);
uint64_t ur_hist_value(unsigned bucket);
int ur_probe_syscall(void);
int ur_timerfd_create(void);
uint32_t ur_crc32c(uint32_t crc, const uint8_t *buf, size_t len);
int ur_check_record(const char *buf, size_t n, const char *key, size_t klen);
int ur_timerfd_arm(int fd, double abs_monotonic);
"""

SOURCE = r"""
#include <Python.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <poll.h>
#include <linux/io_uring.h>

#ifndef __NR_io_uring_setup
#define __NR_io_uring_setup 425
#define __NR_io_uring_enter 426
#define __NR_io_uring_register 427
#endif
#ifndef __NR_statx
#define __NR_statx 332
#endif
#ifndef IORING_SETUP_SUBMIT_ALL
#define IORING_SETUP_SUBMIT_ALL (1U << 7)
#endif

#define UR_MAX_OPS 64
#define UR_HIST_BUCKETS 256
/* user_data with this bit set is internal (async cancel): no slot, no stats. */
#define UR_CANCEL_BIT (1ULL << 63)
/* The poll on a selector's epoll fd (see wait_selector.py), and its cancel. */
#define UR_POLL_UD (UR_CANCEL_BIT | (1ULL << 62))
#ifndef IORING_ENTER_EXT_ARG
#define IORING_ENTER_EXT_ARG (1U << 3)
struct io_uring_getevents_arg { uint64_t sigmask; uint32_t sigmask_sz; uint32_t pad; uint64_t ts; };
#endif
#ifndef IORING_FEAT_EXT_ARG
#define IORING_FEAT_EXT_ARG (1U << 8)
#endif
#define UR_SLOT_MASK 0xFFFFULL

struct ur_ring {
    int fd;
    unsigned sq_entries;
    unsigned cq_entries;
    unsigned features;
    unsigned max_slots;
    unsigned pending;
    uint64_t enter_calls;
    uint64_t sqes_submitted;
    uint64_t cqes_reaped;
    uint64_t cq_overflow;
    uint64_t cancel_cqes;          /* completions of internal cancels, consumed in C */
    uint64_t poll_cqes;
    unsigned poll_armed;
    unsigned poll_fired;
    unsigned early;
    unsigned early_min, early_max;
    int64_t spin_budget;           /* the next spin's length (ns), see ur_select */
    unsigned cpu_bound;            /* the last window's loop hardly waited, see ur_select */
    uint64_t idle_ns;              /* time ur_select spent spinning or asleep */
    uint64_t win_start, win_idle;
    uint64_t ops[UR_MAX_OPS];
    uint64_t bytes[UR_MAX_OPS];
    uint64_t errors[UR_MAX_OPS];
    uint64_t lat_hist[UR_HIST_BUCKETS];
    /* private */
    void *sq_ptr; size_t sq_len;
    void *cq_ptr; size_t cq_len;
    struct io_uring_sqe *sqes; size_t sqes_len;
    unsigned *sq_khead, *sq_ktail, *sq_kmask, *sq_array;
    unsigned *cq_khead, *cq_ktail, *cq_kmask, *cq_koverflow;
    struct io_uring_cqe *cqes;
    unsigned sq_tail;              /* local tail: prepared but unpublished SQEs */
    uint8_t *slot_op;              /* opcode of the op in each slot */
    uint64_t *slot_t0;             /* submit time (ns) of the op in each slot */
};

typedef struct {
    uint32_t mask;
    uint32_t blksize;
    uint32_t nlink;
    uint32_t mode;
    uint64_t ino;
    uint64_t size;
    uint64_t blocks;
    int64_t mtime_sec;
    uint32_t mtime_nsec;
    uint32_t dio_mem_align;
    uint32_t dio_offset_align;
    uint32_t dev_major;
    uint32_t dev_minor;
} ur_stat;

/* Kernel struct statx layout (include/uapi/linux/stat.h), mirrored so that old
   userspace headers without stx_dio_* still build. */
struct ur_kstatx {
    uint32_t mask, blksize; uint64_t attributes;
    uint32_t nlink, uid, gid; uint16_t mode, spare0;
    uint64_t ino, size, blocks, attributes_mask;
    struct { int64_t sec; uint32_t nsec; int32_t reserved; } atime, btime, ctime, mtime;
    uint32_t rdev_major, rdev_minor, dev_major, dev_minor;
    uint64_t mnt_id;
    uint32_t dio_mem_align, dio_offset_align;
    uint64_t spare3[12];
};
#define UR_STATX_BASIC 0x07ffU
#define UR_STATX_DIOALIGN 0x2000U

static inline uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* Log-linear histogram: 4 sub-buckets per power of two (<= 19% error). */
unsigned ur_hist_bucket(uint64_t ns) {
    if (ns < 4) return (unsigned)ns;
    unsigned msb = 63 - __builtin_clzll(ns);
    unsigned sub = (unsigned)((ns >> (msb - 2)) & 3);
    unsigned b = msb * 4 + sub;
    return b < UR_HIST_BUCKETS ? b : UR_HIST_BUCKETS - 1;
}

uint64_t ur_hist_value(unsigned bucket) {
    if (bucket < 4) return bucket;
    unsigned msb = bucket / 4, sub = bucket % 4;
    /* midpoint of the bucket */
    uint64_t lo = (1ULL << msb) | ((uint64_t)sub << (msb - 2));
    return lo + (1ULL << (msb - 2)) / 2;
}

struct ur_ring *ur_new(void) {
    struct ur_ring *r = calloc(1, sizeof(struct ur_ring));
    if (r) r->fd = -1;
    return r;
}

int ur_probe_syscall(void) {
    /* A zero-entry setup fails with EINVAL where io_uring exists and with
       ENOSYS/EPERM where it is missing or filtered. */
    struct io_uring_params p;
    memset(&p, 0, sizeof p);
    long fd = syscall(__NR_io_uring_setup, 0, &p);
    if (fd >= 0) { close((int)fd); return 0; }
    return errno == EINVAL ? 0 : -errno;
}

void ur_close(struct ur_ring *r) {
    if (r->sq_ptr && r->sq_ptr != MAP_FAILED) munmap(r->sq_ptr, r->sq_len);
    if (r->cq_ptr && r->cq_ptr != MAP_FAILED && r->cq_ptr != r->sq_ptr) munmap(r->cq_ptr, r->cq_len);
    if (r->sqes && (void *)r->sqes != MAP_FAILED) munmap(r->sqes, r->sqes_len);
    r->sq_ptr = r->cq_ptr = NULL; r->sqes = NULL;
    if (r->fd >= 0) close(r->fd);
    r->fd = -1;
    free(r->slot_op); free(r->slot_t0);
    r->slot_op = NULL; r->slot_t0 = NULL;
}

void ur_free(struct ur_ring *r) {
    if (!r) return;
    ur_close(r);
    free(r);
}

int ur_setup(struct ur_ring *r, unsigned entries, unsigned cq_entries, unsigned max_slots) {
    struct io_uring_params p;
    memset(&p, 0, sizeof p);
    if (cq_entries) { p.flags |= IORING_SETUP_CQSIZE; p.cq_entries = cq_entries; }
    p.flags |= IORING_SETUP_SUBMIT_ALL;
    long fd = syscall(__NR_io_uring_setup, entries, &p);
    if (fd < 0 && errno == EINVAL) {            /* older kernel: no SUBMIT_ALL */
        p.flags &= ~IORING_SETUP_SUBMIT_ALL;
        fd = syscall(__NR_io_uring_setup, entries, &p);
    }
    if (fd < 0) return -errno;
    r->fd = (int)fd;
    r->sq_entries = p.sq_entries;
    r->cq_entries = p.cq_entries;
    r->features = p.features;

    r->sq_len = p.sq_off.array + p.sq_entries * sizeof(unsigned);
    r->cq_len = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
    if (p.features & IORING_FEAT_SINGLE_MMAP) {
        if (r->cq_len > r->sq_len) r->sq_len = r->cq_len;
        r->cq_len = r->sq_len;
    }
    r->sq_ptr = mmap(0, r->sq_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
                     r->fd, IORING_OFF_SQ_RING);
    if (r->sq_ptr == MAP_FAILED) { int e = errno; ur_close(r); return -e; }
    if (p.features & IORING_FEAT_SINGLE_MMAP) {
        r->cq_ptr = r->sq_ptr;
    } else {
        r->cq_ptr = mmap(0, r->cq_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
                         r->fd, IORING_OFF_CQ_RING);
        if (r->cq_ptr == MAP_FAILED) { int e = errno; ur_close(r); return -e; }
    }
    r->sqes_len = p.sq_entries * sizeof(struct io_uring_sqe);
    r->sqes = mmap(0, r->sqes_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
                   r->fd, IORING_OFF_SQES);
    if ((void *)r->sqes == MAP_FAILED) { int e = errno; ur_close(r); return -e; }

    char *sq = r->sq_ptr, *cq = r->cq_ptr;
    r->sq_khead = (unsigned *)(sq + p.sq_off.head);
    r->sq_ktail = (unsigned *)(sq + p.sq_off.tail);
    r->sq_kmask = (unsigned *)(sq + p.sq_off.ring_mask);
    r->sq_array = (unsigned *)(sq + p.sq_off.array);
    r->cq_khead = (unsigned *)(cq + p.cq_off.head);
    r->cq_ktail = (unsigned *)(cq + p.cq_off.tail);
    r->cq_kmask = (unsigned *)(cq + p.cq_off.ring_mask);
    r->cq_koverflow = (unsigned *)(cq + p.cq_off.overflow);
    r->cqes = (struct io_uring_cqe *)(cq + p.cq_off.cqes);
    /* Identity SQ index array: SQE i is always submitted from slot i. */
    for (unsigned i = 0; i < p.sq_entries; i++) r->sq_array[i] = i;
    r->sq_tail = *r->sq_ktail;

    r->max_slots = max_slots;
    r->early = r->early_min = 1;
    r->early_max = p.sq_entries;
    r->slot_op = calloc(max_slots ? max_slots : 1, 1);
    r->slot_t0 = calloc(max_slots ? max_slots : 1, sizeof(uint64_t));
    if (!r->slot_op || !r->slot_t0) { ur_close(r); return -ENOMEM; }
    return 0;
}

static inline struct io_uring_sqe *get_sqe(struct ur_ring *r) {
    unsigned head = __atomic_load_n(r->sq_khead, __ATOMIC_ACQUIRE);
    if (r->sq_tail - head >= r->sq_entries) return NULL;
    struct io_uring_sqe *sqe = &r->sqes[r->sq_tail & *r->sq_kmask];
    r->sq_tail++;
    r->pending++;
    memset(sqe, 0, sizeof *sqe);
    return sqe;
}

static inline void note_slot(struct ur_ring *r, unsigned op, uint64_t user_data) {
    if (user_data & UR_CANCEL_BIT) return;
    uint64_t slot = user_data & UR_SLOT_MASK;
    if (slot < r->max_slots) { r->slot_op[slot] = (uint8_t)op; r->slot_t0[slot] = now_ns(); }
}

int ur_prep_ex(struct ur_ring *r, unsigned op, int fd, uint64_t addr, uint32_t len,
               uint64_t off, uint32_t op_flags, uint64_t user_data, int buf_index,
               uint32_t splice_fd_in) {
    struct io_uring_sqe *sqe = get_sqe(r);
    if (!sqe) return -EBUSY;
    sqe->opcode = (uint8_t)op;
    sqe->fd = fd;
    sqe->off = off;
    sqe->addr = addr;
    sqe->len = len;
    sqe->rw_flags = (int)op_flags;
    sqe->user_data = user_data;
    if (buf_index >= 0) sqe->buf_index = (uint16_t)buf_index;
    sqe->splice_fd_in = (int32_t)splice_fd_in;
    note_slot(r, op, user_data);
    return 0;
}

int ur_prep(struct ur_ring *r, unsigned op, int fd, uint64_t addr, uint32_t len,
            uint64_t off, uint32_t op_flags, uint64_t user_data, int buf_index) {
    struct io_uring_sqe *sqe = get_sqe(r);
    if (!sqe) return -EBUSY;
    sqe->opcode = (uint8_t)op;
    sqe->fd = fd;
    sqe->off = off;
    sqe->addr = addr;
    sqe->len = len;
    sqe->rw_flags = (int)op_flags;
    sqe->user_data = user_data;
    if (buf_index >= 0) sqe->buf_index = (uint16_t)buf_index;
    note_slot(r, op, user_data);
    return 0;
}

/* The hot path's entry point as a METH_FASTCALL builtin bound to one ring
   (the function's self is the ring's address). A cffi call converts each
   argument through its generic machinery and drops and retakes the GIL:
   about 250 ns for ur_prep's nine arguments, against about 60 ns here, on
   every operation. Same arguments (the ring implied) and result as ur_prep;
   a non-int raises TypeError and an int outside its C type OverflowError,
   as through cffi. */
static int ur_arg_u64(PyObject *o, uint64_t max, uint64_t *out) {
    unsigned long long v = PyLong_AsUnsignedLongLong(o);
    if (v == (unsigned long long)-1 && PyErr_Occurred()) return -1;
    if (v > max) { PyErr_SetString(PyExc_OverflowError, "integer out of range"); return -1; }
    *out = v;
    return 0;
}

static int ur_arg_int(PyObject *o, int *out) {
    long v = PyLong_AsLong(o);
    if (v == -1 && PyErr_Occurred()) return -1;
    if (v < INT_MIN || v > INT_MAX) {
        PyErr_SetString(PyExc_OverflowError, "integer out of range");
        return -1;
    }
    *out = (int)v;
    return 0;
}

static PyObject *ur_fast_prep(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    struct ur_ring *r = (struct ur_ring *)PyLong_AsVoidPtr(self);
    uint64_t op, addr, len, off, flags, ud;
    int fd, buf_index;
    if (nargs != 8) {
        PyErr_Format(PyExc_TypeError, "prep() takes 8 arguments (%zd given)", nargs);
        return NULL;
    }
    if (ur_arg_u64(args[0], UINT32_MAX, &op) < 0 || ur_arg_int(args[1], &fd) < 0 ||
        ur_arg_u64(args[2], UINT64_MAX, &addr) < 0 || ur_arg_u64(args[3], UINT32_MAX, &len) < 0 ||
        ur_arg_u64(args[4], UINT64_MAX, &off) < 0 || ur_arg_u64(args[5], UINT32_MAX, &flags) < 0 ||
        ur_arg_u64(args[6], UINT64_MAX, &ud) < 0 || ur_arg_int(args[7], &buf_index) < 0)
        return NULL;
    return PyLong_FromLong(ur_prep(r, (unsigned)op, fd, addr, (uint32_t)len, off,
                                   (uint32_t)flags, ud, buf_index));
}

static PyMethodDef ur_fast_prep_def = {
    "prep", (PyCFunction)(void (*)(void))ur_fast_prep, METH_FASTCALL,
    "prep(op, fd, addr, len, off, flags, user_data, buf_index): ur_prep on the bound ring"};

/* namespace["prep"] = the builtin bound to r (namespace: a dict's address,
   the caller keeps it alive). 0, or -1 when it could not be made. */
int ur_bind_prep(struct ur_ring *r, uintptr_t namespace) {
    PyGILState_STATE gil = PyGILState_Ensure();
    int rc = -1;
    PyObject *self = PyLong_FromVoidPtr(r);
    if (self) {
        PyObject *fn = PyCFunction_NewEx(&ur_fast_prep_def, self, NULL);
        if (fn) {
            rc = PyDict_SetItemString((PyObject *)namespace, "prep", fn);
            Py_DECREF(fn);
        }
        Py_DECREF(self);
    }
    if (rc < 0) PyErr_Clear();
    PyGILState_Release(gil);
    return rc;
}

int ur_prep_batch(struct ur_ring *r, unsigned n, const uint8_t *ops, const int32_t *fds,
                  const uint64_t *addrs, const uint32_t *lens, const uint64_t *offs,
                  const uint64_t *user_data) {
    unsigned i;
    for (i = 0; i < n; i++) {
        if (ur_prep(r, ops[i], fds[i], addrs[i], lens[i], offs[i], 0, user_data[i], -1) < 0)
            break;
    }
    return (int)i;
}

unsigned ur_cq_ready(struct ur_ring *r) {
    return __atomic_load_n(r->cq_ktail, __ATOMIC_ACQUIRE) - *r->cq_khead;
}

/* Submitting before a scheduler pass ends lets a device start on the pass's
   first operations while the rest are prepared. It buys nothing for
   operations the kernel completes inside io_uring_enter (nops, page-cache
   hits, cached metadata), where each early submit is one more syscall. So
   the early-submit size doubles, up to early_max, after a submit whose
   operations all completed during the call, and drops back to early_min
   after one where any did not (device I/O decides at once) -- unless the
   loop is CPU-bound (see UR_WINDOW_NS). */
static void ur_grow_early(struct ur_ring *r) {
    unsigned e = r->early * 2;
    r->early = e < r->early_max ? e : r->early_max;
}

/* A loop that hardly waits (idle under a tenth of a window of UR_WINDOW_NS)
   is CPU-bound: the device already holds more than the loop keeps up with,
   and an early submit only adds an io_uring_enter per few operations (a
   third of a CPU-bound store read's kernel time, measured). Such a loop
   submits once per pass: the early size grows as for inline completions.
   A loop that waits a good part of the time (over a quarter: the gap keeps
   a loop near the line from flapping) waits for the device, which should
   then get each operation as soon as it is prepared. */
#define UR_WINDOW_NS 10000000ull

static void ur_adapt_early(struct ur_ring *r, unsigned submitted, unsigned completed) {
    if (completed >= submitted) ur_grow_early(r);
    else if (!r->cpu_bound) r->early = r->early_min;
}

int ur_submit(struct ur_ring *r, unsigned min_complete) {
    unsigned n = r->pending;
    if (n) __atomic_store_n(r->sq_ktail, r->sq_tail, __ATOMIC_RELEASE);
    if (!n && !min_complete) return 0;
    unsigned flags = min_complete ? IORING_ENTER_GETEVENTS : 0;
    unsigned before = ur_cq_ready(r);
    long ret;
    do {
        ret = syscall(__NR_io_uring_enter, r->fd, n, min_complete, flags, NULL, 0);
    } while (ret < 0 && errno == EINTR);
    r->enter_calls++;
    if (ret < 0) return -errno;
    /* SUBMIT_ALL: the kernel consumed every SQE or none (an error). */
    r->sqes_submitted += (uint64_t)ret;
    r->pending -= (unsigned)ret <= n ? (unsigned)ret : n;
    if (!min_complete && ret > 0) ur_adapt_early(r, (unsigned)ret, ur_cq_ready(r) - before);
    return (int)ret;
}

/* Submit what is prepared and wait for at least one completion, at most
   timeout_ns (< 0: no limit). One io_uring_enter; -ETIME and -EINTR are
   ordinary outcomes (the caller reaps whatever arrived). */
static int ur_wait(struct ur_ring *r, int64_t timeout_ns) {
    unsigned n = r->pending;
    if (n) __atomic_store_n(r->sq_ktail, r->sq_tail, __ATOMIC_RELEASE);
    unsigned flags = IORING_ENTER_GETEVENTS;
    struct __kernel_timespec ts;
    struct io_uring_getevents_arg arg;
    void *argp = NULL;
    size_t argsz = 0;
    if (timeout_ns >= 0) {
        ts.tv_sec = timeout_ns / 1000000000LL;
        ts.tv_nsec = timeout_ns % 1000000000LL;
        memset(&arg, 0, sizeof arg);
        arg.ts = (uint64_t)(uintptr_t)&ts;
        flags |= IORING_ENTER_EXT_ARG;
        argp = &arg;
        argsz = sizeof arg;
    }
    long ret = syscall(__NR_io_uring_enter, r->fd, n, 1, flags, argp, argsz);
    r->enter_calls++;
    if (ret < 0) return -errno;   /* nothing was submitted (the kernel reports waits only then) */
    r->sqes_submitted += (uint64_t)ret;
    r->pending -= (unsigned)ret <= n ? (unsigned)ret : n;
    return (int)ret;
}

/* Whether ur_wait can bound its wait (IORING_FEAT_EXT_ARG, Linux 5.11). */
int ur_can_wait(struct ur_ring *r) {
    return (r->features & IORING_FEAT_EXT_ARG) != 0;
}

/* Prepare a one-shot POLLIN poll on `fd` (a selector's epoll fd): its
   completion wakes ur_wait when any fd of the selector is ready. */
int ur_arm_poll(struct ur_ring *r, int fd) {
    if (r->poll_armed) return 0;
    struct io_uring_sqe *sqe = get_sqe(r);
    if (!sqe) return -EBUSY;
    sqe->opcode = IORING_OP_POLL_ADD;
    sqe->fd = fd;
    sqe->poll32_events = POLLIN;
    sqe->user_data = UR_POLL_UD;
    r->poll_armed = 1;
    r->poll_fired = 0;
    return 0;
}

/* Ask the kernel to drop an armed poll (its CQE then arrives as -ECANCELED).
   Returns 1 if a cancel was prepared, 0 if no poll is armed. */
int ur_cancel_poll(struct ur_ring *r) {
    if (!r->poll_armed) return 0;
    struct io_uring_sqe *sqe = get_sqe(r);
    if (!sqe) return -EBUSY;
    sqe->opcode = IORING_OP_ASYNC_CANCEL;
    sqe->fd = -1;
    sqe->addr = UR_POLL_UD;
    sqe->user_data = UR_CANCEL_BIT | UR_SLOT_MASK;
    return 1;
}

unsigned ur_sq_space(struct ur_ring *r) {
    unsigned head = __atomic_load_n(r->sq_khead, __ATOMIC_ACQUIRE);
    return r->sq_entries - (r->sq_tail - head);
}

/* Drain up to `max` operation completions into (slot, result) arrays. Cancel
   completions are consumed here and only counted, so Python sees ops only. */
int ur_reap(struct ur_ring *r, uint32_t *slots, int32_t *res, unsigned max) {
    unsigned head = *r->cq_khead;
    unsigned tail = __atomic_load_n(r->cq_ktail, __ATOMIC_ACQUIRE);
    unsigned mask = *r->cq_kmask;
    unsigned n = 0;
    uint64_t t = 0;
    while (head != tail && n < max) {
        struct io_uring_cqe *cqe = &r->cqes[head & mask];
        uint64_t ud = cqe->user_data;
        int32_t rv = cqe->res;
        head++;
        if (ud & UR_CANCEL_BIT) {
            if (ud == UR_POLL_UD) { r->poll_cqes++; r->poll_armed = 0; r->poll_fired = 1; }
            else r->cancel_cqes++;
            continue;
        }
        uint64_t slot = ud & UR_SLOT_MASK;
        slots[n] = (uint32_t)slot;
        res[n] = rv;
        n++;
        if (slot < r->max_slots) {
            unsigned op = r->slot_op[slot] & (UR_MAX_OPS - 1);
            if (!t) t = now_ns();
            r->ops[op]++;
            if (rv < 0) r->errors[op]++;
            else if (op == IORING_OP_READ || op == IORING_OP_WRITE ||
                     op == IORING_OP_READ_FIXED || op == IORING_OP_WRITE_FIXED ||
                     op == IORING_OP_READV || op == IORING_OP_WRITEV)
                r->bytes[op] += (uint64_t)rv;
            uint64_t t0 = r->slot_t0[slot];
            r->lat_hist[ur_hist_bucket(t > t0 ? t - t0 : 0)]++;
        }
    }
    __atomic_store_n(r->cq_khead, head, __ATOMIC_RELEASE);
    r->cqes_reaped += n;
    r->cq_overflow = __atomic_load_n(r->cq_koverflow, __ATOMIC_RELAXED);
    return (int)n;
}

/* One select() of a ring attached to a kernel's selector (wait_selector.py),
   in one call: submit what is prepared; if `block` and no completion is
   waiting, sleep in the ring (the poll on epfd armed first: it ends the sleep
   when any fd of the selector is ready; without it the sleep is capped at
   1 ms) for at most timeout_ns (< 0: no limit); then reap up to `max`
   completions into slots/res. *epoll_ready says whether epoll may have events
   (the poll fired, or is not armed): the caller then polls epoll and re-arms.
   spin_ns > 0: before sleeping, submit and watch the CQ that long (capped by
   the timeout): a completion due within microseconds is then seen without
   the sleep and wake-up, which cost ~25 us on a VM. The caller passes 0 when
   nothing is in flight.
   Returns the number reaped, or -errno if io_uring_enter failed. */
int ur_select(struct ur_ring *r, int block, int64_t timeout_ns, int64_t spin_ns, int epfd,
              uint32_t *slots, int32_t *res, unsigned max, int *epoll_ready) {
    int rc = 0;
    uint64_t w0 = 0;                           /* when a wait began (0: none) */
    if (r->cpu_bound) ur_grow_early(r);
    if (block && ur_cq_ready(r) == 0) {
        w0 = now_ns();
        if (!r->poll_armed && ur_arm_poll(r, epfd) < 0) {
            ur_submit(r, 0);                   /* SQ full: make room */
            ur_arm_poll(r, epfd);
        }
        if (!r->poll_armed && (timeout_ns < 0 || timeout_ns > 1000000)) timeout_ns = 1000000;
        if (spin_ns > 0 && timeout_ns != 0) {
            /* Adaptive, like a mutex's spin: after a spin that caught a
               completion the next is the full spin_ns, after one that did
               not it is half as long, down to a sixteenth. Operations that
               take milliseconds (1 MiB writes) then burn little CPU
               spinning; short ones keep the whole spin. */
            int64_t budget = r->spin_budget > 0 && r->spin_budget < spin_ns ? r->spin_budget : spin_ns;
            int capped = timeout_ns > 0 && budget > timeout_ns;
            if (capped) budget = timeout_ns;
            if (r->pending) rc = ur_submit(r, 0);
            uint64_t t0 = now_ns(), t = t0;
            while (ur_cq_ready(r) == 0 && (t = now_ns()) - t0 < (uint64_t)budget) {
#if defined(__x86_64__) || defined(__i386__)
                __builtin_ia32_pause();
#endif
            }
            if (ur_cq_ready(r)) {
                r->spin_budget = spin_ns;
            } else if (!capped) {
                int64_t half = budget / 2, floor = spin_ns / 16;
                r->spin_budget = half > floor ? half : floor;
            }
            if (timeout_ns > 0) timeout_ns = timeout_ns > (int64_t)(t - t0) ? timeout_ns - (int64_t)(t - t0) : 0;
        }
        if (ur_cq_ready(r) == 0 && (rc >= 0 || rc == -EAGAIN || rc == -EBUSY)) rc = ur_wait(r, timeout_ns);
    } else if (r->pending) {
        rc = ur_submit(r, 0);
    }
    /* Judged after the wait, so that a loop that just slept long is no
       longer taken for a CPU-bound one by the operations it prepares next. */
    uint64_t now = now_ns(), span = now - r->win_start;
    if (w0) r->idle_ns += now - w0;
    if (span >= UR_WINDOW_NS) {
        uint64_t idle = r->idle_ns - r->win_idle;
        unsigned was = r->cpu_bound;
        r->cpu_bound = was ? idle * 4 < span : idle * 10 < span;
        if (was && !r->cpu_bound) r->early = r->early_min;
        r->win_start = now;
        r->win_idle = r->idle_ns;
    }
    if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) return rc;
    int n = ur_reap(r, slots, res, max);
    *epoll_ready = !r->poll_armed || r->poll_fired;
    r->poll_fired = 0;
    return n;
}

int ur_register_eventfd(struct ur_ring *r, int efd) {
    long ret = syscall(__NR_io_uring_register, r->fd, IORING_REGISTER_EVENTFD, &efd, 1);
    return ret < 0 ? -errno : 0;
}

int ur_unregister_eventfd(struct ur_ring *r) {
    long ret = syscall(__NR_io_uring_register, r->fd, IORING_UNREGISTER_EVENTFD, NULL, 0);
    return ret < 0 ? -errno : 0;
}

int ur_probe(struct ur_ring *r, uint8_t *supported, unsigned n) {
    size_t sz = sizeof(struct io_uring_probe) + 256 * sizeof(struct io_uring_probe_op);
    struct io_uring_probe *p = calloc(1, sz);
    if (!p) return -ENOMEM;
    long ret = syscall(__NR_io_uring_register, r->fd, IORING_REGISTER_PROBE, p, 256);
    if (ret < 0) { int e = errno; free(p); return -e; }
    memset(supported, 0, n);
    for (unsigned i = 0; i < p->ops_len && i < 256; i++) {
        unsigned op = p->ops[i].op;
        if (op < n && (p->ops[i].flags & IO_URING_OP_SUPPORTED)) supported[op] = 1;
    }
    int last = p->last_op;
    free(p);
    return last;
}

int ur_register_buffers(struct ur_ring *r, uint64_t base, const uint32_t *sizes, unsigned count) {
    struct iovec *iov = calloc(count ? count : 1, sizeof *iov);
    if (!iov) return -ENOMEM;
    uint64_t addr = base;
    for (unsigned i = 0; i < count; i++) {
        iov[i].iov_base = (void *)(uintptr_t)addr;
        iov[i].iov_len = sizes[i];
        addr += sizes[i];
    }
    long ret = syscall(__NR_io_uring_register, r->fd, IORING_REGISTER_BUFFERS, iov, count);
    int e = errno;
    free(iov);
    return ret < 0 ? -e : 0;
}

int ur_unregister_buffers(struct ur_ring *r) {
    long ret = syscall(__NR_io_uring_register, r->fd, IORING_UNREGISTER_BUFFERS, NULL, 0);
    return ret < 0 ? -errno : 0;
}

int ur_eventfd(void) {
    int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

int ur_eventfd_clear(int efd) {
    uint64_t v;
    ssize_t n = read(efd, &v, sizeof v);
    if (n < 0) return errno == EAGAIN ? 0 : -errno;
    return 1;
}

void *ur_alloc(size_t size, size_t align) {
    void *p = NULL;
    if (posix_memalign(&p, align, size ? size : align) != 0) return NULL;
    memset(p, 0, size);
    return p;
}

void ur_dealloc(void *p) { free(p); }

unsigned ur_statx_raw_size(void) { return sizeof(struct ur_kstatx); }

int ur_stat_decode(const void *raw, ur_stat *out) {
    const struct ur_kstatx *k = raw;
    out->mask = k->mask;
    out->blksize = k->blksize;
    out->nlink = k->nlink;
    out->mode = k->mode;
    out->ino = k->ino;
    out->size = k->size;
    out->blocks = k->blocks;
    out->mtime_sec = k->mtime.sec;
    out->mtime_nsec = k->mtime.nsec;
    out->dio_mem_align = (k->mask & UR_STATX_DIOALIGN) ? k->dio_mem_align : 0;
    out->dio_offset_align = (k->mask & UR_STATX_DIOALIGN) ? k->dio_offset_align : 0;
    out->dev_major = k->dev_major;
    out->dev_minor = k->dev_minor;
    return 0;
}

int ur_statx_path(int dirfd, const char *path, int flags, ur_stat *out) {
    struct ur_kstatx k;
    memset(&k, 0, sizeof k);
    long ret = syscall(__NR_statx, dirfd, path, flags, UR_STATX_BASIC | UR_STATX_DIOALIGN, &k);
    if (ret < 0) return -errno;
    return ur_stat_decode(&k, out);
}

int ur_statx_fd(int fd, ur_stat *out) {
    return ur_statx_path(fd, "", AT_EMPTY_PATH, out);
}

/* @CRC32C@ (uring/crc32c.h) */

uint32_t ur_crc32c(uint32_t crc, const uint8_t *buf, size_t len) {
    return crc32c_update(crc, buf, len);
}

/* Check that buf[0:n] is exactly one intact record of `key` (a point read of
   the store): the header's lengths add up to n, the checksum holds, the key
   matches. Returns the kind (1 put, 2 delete) or a negative code: -1 bad
   header or length, -2 checksum mismatch, -3 another key. The value is
   buf[21 + klen : n]. */
int ur_check_record(const char *buf, size_t n, const char *key, size_t klen) {
    const uint8_t *p = (const uint8_t *)buf;
    uint32_t crc, kl, vl;
    if (n < 21) return -1;
    memcpy(&crc, p, 4);
    memcpy(&kl, p + 12, 4);
    memcpy(&vl, p + 16, 4);
    if ((p[20] != 1 && p[20] != 2) || 21 + (uint64_t)kl + vl != n) return -1;
    if (ur_crc32c(0, p + 4, n - 4) != crc) return -2;
    if (kl != klen || memcmp(p + 21, key, klen) != 0) return -3;
    return p[20];
}

int ur_timerfd_create(void) {
    int fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

/* Arm at an absolute CLOCK_MONOTONIC time (Python's time.monotonic); <= 0 disarms. */
int ur_timerfd_arm(int fd, double abs_monotonic) {
    struct itimerspec its;
    memset(&its, 0, sizeof its);
    if (abs_monotonic > 0) {
        its.it_value.tv_sec = (time_t)abs_monotonic;
        its.it_value.tv_nsec = (long)((abs_monotonic - (double)its.it_value.tv_sec) * 1e9);
        if (its.it_value.tv_sec == 0 && its.it_value.tv_nsec == 0) its.it_value.tv_nsec = 1;
    }
    return timerfd_settime(fd, TFD_TIMER_ABSTIME, &its, NULL) < 0 ? -errno : 0;
}

int ur_fallocate(int fd, int mode, int64_t offset, int64_t len) {
    return fallocate(fd, mode, offset, len) < 0 ? -errno : 0;
}
"""

# Read by path: cffi runs this file with exec(), not as a package import.
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "crc32c.h")) as _f:
    SOURCE = SOURCE.replace("/* @CRC32C@ (uring/crc32c.h) */", _f.read())

ffibuilder = FFI()
ffibuilder.cdef(CDEF)
ffibuilder.set_source("uring._uring_c", SOURCE, py_limited_api=False, extra_compile_args=["-O2", "-std=gnu11"])

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
