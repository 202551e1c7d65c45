"""cffi API-mode builder for ``statelets._index_c``: the store's key index in C.

The store maps every live key to the record holding its value (Bitcask's
keydir). As a CPython dict that costs a bytes object, an int object and a dict
entry per key (about 110 bytes) and, worse, one random memory access per
Python-level operation: at a million keys a batch of overwrites spent most of
its time in ``dict.get``/``dict.update`` walks. Here the keys live in one arena
and the table is open addressing with linear probing over 8-byte slots that
name 24-byte entries appended in order (CPython's compact dict layout). Batches
cross the boundary once: a C call walks the caller's list of keys itself and
prefetches the slots of the keys ahead, so the cache misses overlap.

Locations are ``segment << 32 | ordinal`` plus the record length; ``0`` is
never a location (segment ids start at 1).

Python objects are reached through ``id()`` (their address in CPython) with the
GIL taken back for the duration (cffi releases it around every call): the list
walk is the whole point, and cffi has no ``PyObject *`` argument type. Only
``statelets.keyindex`` calls these, with arguments it has checked.

Compiled at install time via ``setup.py`` (``cffi_modules``), next to uring's.
"""
import os

from cffi import FFI

CDEF = r"""
typedef struct kx_index kx_index;

kx_index *kx_new(void);
void kx_free(kx_index *ix);
void kx_clear(kx_index *ix);
size_t kx_len(kx_index *ix);
size_t kx_memory(kx_index *ix);

uint64_t kx_get(kx_index *ix, const char *key, size_t klen, uint32_t *rlen);
int kx_set(kx_index *ix, const char *key, size_t klen, uint64_t loc, uint32_t rlen,
           uint64_t *old_loc, uint32_t *old_rlen);
int kx_pop(kx_index *ix, const char *key, size_t klen, uint64_t *old_loc, uint32_t *old_rlen);

int64_t kx_apply(kx_index *ix, uintptr_t keys_list, const char *kbuf, const uint32_t *klens,
                 size_t n, const char *kinds, uint64_t loc0, const uint32_t *rlens,
                 uint64_t *dead_sids, uint64_t *dead_bytes, size_t *ndead);
int64_t kx_repoint(kx_index *ix, uintptr_t keys_list, const uint64_t *old_locs,
                   const uint64_t *new_locs, const uint32_t *new_rlens, size_t n);
int kx_keys_into(kx_index *ix, uintptr_t out_list);
int kx_contains_many(kx_index *ix, uintptr_t keys_list, size_t n, char *out);
size_t kx_live_by_segment(kx_index *ix, uint64_t *sids, uint64_t *bytes, size_t cap);

int64_t kx_measure(uintptr_t keys_list, uintptr_t vals_list, size_t n, const char *kinds,
                   uint64_t max_key, uint64_t max_value, uint64_t *rec_bytes);
int64_t kx_encode(uintptr_t keys_list, uintptr_t vals_list, size_t i0, size_t n,
                  const char *kinds, uint64_t seq0, const uint64_t *seqs,
                  char *out, size_t cap, uint64_t base,
                  uint32_t *rlens, uint32_t *offs, char *hint, size_t hcap, uint64_t *used);
int64_t kx_hint_columns(const char *rows, size_t nbytes, size_t n, uint64_t *seqs,
                        uint32_t *offs, uint32_t *lens, uint32_t *klens, char *kinds,
                        char *keys, size_t key_cap);
int64_t kx_refresh_cached(uintptr_t cache, uintptr_t keys_list, uintptr_t vals_list, size_t n,
                          int64_t *delta);
int64_t kx_lookup_cached(uintptr_t keys_list, size_t n, uintptr_t wbuf, uintptr_t flushing,
                         uintptr_t cache, uintptr_t tombstone, uintptr_t ref, uintptr_t out_list,
                         uint32_t *miss, uint64_t *hits);
"""

SOURCE = r"""
#include <Python.h>
/* @CRC32C@ (uring/crc32c.h) */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define KX_DELETE 2                 /* record kind of a tombstone (statelets/record.py) */
#define KX_KLEN_BITS 21             /* keys up to 1 MiB (record.MAX_KEY) */
#define KX_AHEAD 24                 /* keys hashed and prefetched ahead of the probe */
#define KX_STAGE (KX_AHEAD / 3)     /* ...in three stages: slot, entry, stored key */
#define KX_RING 32                  /* > KX_AHEAD: the pipeline's per-key state */

/* The layout of CPython's dict and Rust's indexmap: a table of 8-byte slots
   (the key's hash and its entry's index) over an array of entries appended
   in order. Growing the table rewrites only the slots, from the hashes they
   hold, and the entries grow in place (mremap): a million keys touch about
   56 MB of fresh memory, against 96 MB with 24-byte slots in the table,
   and on a VM the first touch of memory is most of an insert's cost. */
typedef struct {
    uint32_t hash;                  /* 0: empty slot */
    uint32_t idx;                   /* its entry */
} kx_slot;

typedef struct {
    uint64_t loc;                   /* segment << 32 | ordinal */
    uint64_t kref;                  /* arena offset << KX_KLEN_BITS | key length */
    uint32_t rlen;                  /* record length (dead-byte accounting) */
    uint32_t hash;                  /* 0: a removed key's entry, reused by no one */
} kx_entry;

typedef struct kx_index kx_index;
struct kx_index {
    kx_slot *slots;
    uint64_t mask;                  /* capacity - 1, a power of two */
    size_t n;                       /* live keys */
    kx_entry *ents;
    size_t nent, ecap;              /* entries used (live and removed), capacity */
    uint8_t *arena;
    size_t alen, acap, garbage;     /* garbage: bytes of keys no longer indexed */
};

static inline uint64_t kx_rd64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }

static inline uint64_t kx_mix(uint64_t a, uint64_t b) {
    __uint128_t r = (__uint128_t)a * b;
    return (uint64_t)r ^ (uint64_t)(r >> 64);
}

/* A wyhash-style multiply-fold over 8-byte words; never 0 (0 marks empty). */
static uint32_t kx_hash(const uint8_t *p, size_t n) {
    uint64_t h = 0x9E3779B97F4A7C15ull ^ ((uint64_t)n * 0xff51afd7ed558ccdull);
    while (n >= 8) { h = kx_mix(h ^ kx_rd64(p), 0xa0761d6478bd642full); p += 8; n -= 8; }
    uint64_t t = 0;
    memcpy(&t, p, n);
    h = kx_mix(h ^ t ^ ((uint64_t)n << 56), 0xe7037ed1a0b428dbull);
    h ^= h >> 33; h *= 0xff51afd7ed558ccdull; h ^= h >> 29;
    uint32_t r = (uint32_t)(h ^ (h >> 32));
    return r ? r : 1;
}

/* Table, entries and arena are anonymous mappings that grow in place
   (mremap). Only the table is advised as transparent huge pages (where THP
   is "madvise", the usual default): a random probe into a big table
   otherwise pays a TLB miss and a page-table walk, and growing it rewrites
   pages it already has. Entries and arena are appended in order, so their
   fresh memory is what an insert pays for, and on the reference VM fresh
   huge pages cost more and vary more than 4 KiB ones: a million fresh keys
   took 100-160 ns/key with all three advised, 72-76 with the table alone
   (.bench-tmp/kx2.py, alternating processes), and random lookups were
   within 3 %. Mappings start zeroed. */
#define KX_HUGE ((size_t)2 << 20)

static void *kx_map(size_t bytes, int huge) {
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return NULL;
    if (huge && bytes >= KX_HUGE) madvise(p, bytes, MADV_HUGEPAGE);
    return p;
}

static void *kx_remap(void *p, size_t old, size_t bytes, int huge) {
    void *q = mremap(p, old, bytes, MREMAP_MAYMOVE);
    if (q == MAP_FAILED) return NULL;
    if (huge && bytes >= KX_HUGE) madvise(q, bytes, MADV_HUGEPAGE);
    return q;
}

static inline const uint8_t *kx_key(const kx_index *ix, const kx_entry *e) {
    return ix->arena + (e->kref >> KX_KLEN_BITS);
}
static inline size_t kx_klen(const kx_entry *e) { return e->kref & ((1u << KX_KLEN_BITS) - 1); }
static inline kx_entry *kx_ent(const kx_index *ix, const kx_slot *s) { return &ix->ents[s->idx]; }

#define KX_SLOTS0 64
#define KX_ENTS0 ((size_t)4096 / sizeof(kx_entry))

kx_index *kx_new(void) {
    kx_index *ix = calloc(1, sizeof *ix);
    if (!ix) return NULL;
    ix->slots = kx_map(KX_SLOTS0 * sizeof(kx_slot), 1);
    ix->ents = kx_map(KX_ENTS0 * sizeof(kx_entry), 0);
    ix->arena = kx_map(4096, 0);
    if (!ix->slots || !ix->ents || !ix->arena) {
        if (ix->slots) munmap(ix->slots, KX_SLOTS0 * sizeof(kx_slot));
        if (ix->ents) munmap(ix->ents, KX_ENTS0 * sizeof(kx_entry));
        if (ix->arena) munmap(ix->arena, 4096);
        free(ix);
        return NULL;
    }
    ix->mask = KX_SLOTS0 - 1;
    ix->ecap = KX_ENTS0;
    ix->acap = 4096;
    return ix;
}

void kx_free(kx_index *ix) {
    if (!ix) return;
    munmap(ix->slots, (ix->mask + 1) * sizeof(kx_slot));
    munmap(ix->ents, ix->ecap * sizeof(kx_entry));
    munmap(ix->arena, ix->acap);
    free(ix);
}

void kx_clear(kx_index *ix) {
    memset(ix->slots, 0, (ix->mask + 1) * sizeof(kx_slot));
    ix->n = 0;
    ix->nent = 0;
    ix->alen = 0;
    ix->garbage = 0;
}

size_t kx_len(kx_index *ix) { return ix->n; }

size_t kx_memory(kx_index *ix) {
    return sizeof *ix + (ix->mask + 1) * sizeof(kx_slot) + ix->ecap * sizeof(kx_entry) + ix->acap;
}

/* Place slot value v (from a table being rebuilt) in the empty table ns. */
static inline void kx_place(kx_slot *ns, uint64_t mask, kx_slot v) {
    uint64_t j = v.hash & mask;
    while (ns[j].hash) j = (j + 1) & mask;
    ns[j] = v;
}

/* Point the (zeroed) table at every live entry: the slots hold nothing the
   entries do not, so a rebuild never reads the old table. */
static void kx_place_entries(kx_index *ix) {
    kx_slot *ns = ix->slots;
    const kx_entry *e = ix->ents;
    const uint64_t mask = ix->mask;
    const size_t n = ix->nent;
    for (size_t i = 0; i < n; i++) {
        /* The slots land at random: fetch them ahead so the misses overlap. */
        if (i + KX_AHEAD < n) __builtin_prefetch(&ns[e[i + KX_AHEAD].hash & mask], 1);
        if (e[i].hash) kx_place(ns, mask, (kx_slot){e[i].hash, (uint32_t)i});
    }
}

/* Drop the removed keys' entries (when they are most of the array) and
   rebuild the table over what is left, in the same order. */
static void kx_compact_entries(kx_index *ix) {
    size_t w = 0;
    for (size_t i = 0; i < ix->nent; i++)
        if (ix->ents[i].hash) ix->ents[w++] = ix->ents[i];
    ix->nent = w;
    memset(ix->slots, 0, (ix->mask + 1) * sizeof(kx_slot));
    kx_place_entries(ix);
}

/* Room for `more` new keys: the table at a load factor of at most 3/4 and
   the entries (removed ones are dropped first when they are most of them). */
static int kx_reserve(kx_index *ix, size_t more) {
    if (ix->nent + more > ix->ecap) {
        size_t removed = ix->nent - ix->n;
        if (removed > ix->n && removed >= more) kx_compact_entries(ix);
    }
    if (ix->nent + more > ix->ecap) {
        size_t cap = ix->ecap;
        while (ix->nent + more > cap) cap *= 2;
        if (cap > ((size_t)1 << 32)) return -1;          /* idx is 32 bits */
        kx_entry *ne = kx_remap(ix->ents, ix->ecap * sizeof(kx_entry), cap * sizeof(kx_entry), 0);
        if (!ne) return -1;
        ix->ents = ne;
        ix->ecap = cap;
    }
    uint64_t cap = ix->mask + 1;
    if ((ix->n + more) * 4 <= cap * 3) return 0;
    while ((ix->n + more) * 4 > cap * 3) cap *= 2;
    /* Grow the table in place and rebuild it from the entries: the old pages
       are reused (zeroing them here costs far less than faulting in fresh
       ones, which a new table would need on top), only the new part is fresh. */
    uint64_t old = ix->mask + 1;
    kx_slot *ns = kx_remap(ix->slots, old * sizeof(kx_slot), cap * sizeof(kx_slot), 1);
    if (!ns) return -1;
    memset(ns, 0, old * sizeof(kx_slot));
    ix->slots = ns;
    ix->mask = cap - 1;
    kx_place_entries(ix);
    return 0;
}

/* Rewrite the arena without the keys no longer indexed (when they are most of it). */
static int kx_compact_arena(kx_index *ix) {
    size_t live = ix->alen - ix->garbage;
    size_t cap = live + 4096;
    uint8_t *na = kx_map(cap, 0);
    if (!na) return -1;
    size_t pos = 0;
    for (size_t i = 0; i < ix->nent; i++) {
        kx_entry *e = &ix->ents[i];
        if (!e->hash) continue;
        size_t kl = kx_klen(e);
        memcpy(na + pos, kx_key(ix, e), kl);
        e->kref = ((uint64_t)pos << KX_KLEN_BITS) | kl;
        pos += kl;
    }
    munmap(ix->arena, ix->acap);
    ix->arena = na;
    ix->alen = pos;
    ix->acap = cap;
    ix->garbage = 0;
    return 0;
}

static int kx_arena_room(kx_index *ix, size_t kl) {
    if (ix->alen + kl <= ix->acap) return 0;
    if (ix->garbage > ix->alen / 2 && ix->garbage > ((size_t)1 << 20)) {
        if (kx_compact_arena(ix) < 0) return -1;
        if (ix->alen + kl <= ix->acap) return 0;
    }
    size_t cap = ix->acap;
    while (ix->alen + kl > cap) cap *= 2;
    uint8_t *na = kx_remap(ix->arena, ix->acap, cap, 0);
    if (!na) return -1;
    ix->arena = na;
    ix->acap = cap;
    return 0;
}

/* The slot holding key, or the empty slot where it would go. */
static inline kx_slot *kx_find(kx_index *ix, const uint8_t *key, size_t kl, uint32_t h) {
    uint64_t j = h & ix->mask;
    for (;;) {
        kx_slot *s = &ix->slots[j];
        if (!s->hash) return s;
        if (s->hash == h) {
            const kx_entry *e = kx_ent(ix, s);
            if (kx_klen(e) == kl && memcmp(kx_key(ix, e), key, kl) == 0) return s;
        }
        j = (j + 1) & ix->mask;
    }
}

/* Empty slot s (its entry marked removed), shifting later members of its
   probe run back (no tombstones in the table). */
static void kx_remove(kx_index *ix, kx_slot *s) {
    uint64_t mask = ix->mask;
    uint64_t i = (uint64_t)(s - ix->slots), j = i;
    kx_entry *e = kx_ent(ix, s);
    ix->garbage += kx_klen(e);
    e->hash = 0;
    for (;;) {
        j = (j + 1) & mask;
        kx_slot *t = &ix->slots[j];
        if (!t->hash) break;
        uint64_t home = t->hash & mask;
        if (((j - home) & mask) >= ((j - i) & mask)) {
            ix->slots[i] = *t;
            i = j;
        }
    }
    ix->slots[i].hash = 0;
    ix->n--;
}

/* A new key in empty slot s; kx_reserve made room for its entry. */
static inline int kx_fill(kx_index *ix, kx_slot *s, const uint8_t *key, size_t kl, uint32_t h,
                          uint64_t loc, uint32_t rlen) {
    /* the arena may move: callers pass keys that live outside it */
    if (kx_arena_room(ix, kl) < 0) return -1;
    memcpy(ix->arena + ix->alen, key, kl);
    kx_entry *e = &ix->ents[ix->nent];
    e->kref = ((uint64_t)ix->alen << KX_KLEN_BITS) | kl;
    e->loc = loc;
    e->rlen = rlen;
    e->hash = h;
    ix->alen += kl;
    s->hash = h;
    s->idx = (uint32_t)ix->nent++;
    ix->n++;
    return 0;
}

uint64_t kx_get(kx_index *ix, const char *key, size_t klen, uint32_t *rlen) {
    kx_slot *s = kx_find(ix, (const uint8_t *)key, klen, kx_hash((const uint8_t *)key, klen));
    if (!s->hash) return 0;
    *rlen = kx_ent(ix, s)->rlen;
    return kx_ent(ix, s)->loc;
}

/* 1 if key was present (its old location in old_*), 0 if new, -1 out of memory. */
int kx_set(kx_index *ix, const char *key, size_t klen, uint64_t loc, uint32_t rlen,
           uint64_t *old_loc, uint32_t *old_rlen) {
    if (kx_reserve(ix, 1) < 0) return -1;
    uint32_t h = kx_hash((const uint8_t *)key, klen);
    kx_slot *s = kx_find(ix, (const uint8_t *)key, klen, h);
    if (s->hash) {
        kx_entry *e = kx_ent(ix, s);
        *old_loc = e->loc;
        *old_rlen = e->rlen;
        e->loc = loc;
        e->rlen = rlen;
        return 1;
    }
    return kx_fill(ix, s, (const uint8_t *)key, klen, h, loc, rlen) < 0 ? -1 : 0;
}

int kx_pop(kx_index *ix, const char *key, size_t klen, uint64_t *old_loc, uint32_t *old_rlen) {
    kx_slot *s = kx_find(ix, (const uint8_t *)key, klen, kx_hash((const uint8_t *)key, klen));
    if (!s->hash) return 0;
    *old_loc = kx_ent(ix, s)->loc;
    *old_rlen = kx_ent(ix, s)->rlen;
    kx_remove(ix, s);
    return 1;
}

/* Key i of a batch: from a list of bytes (keys_list != 0) or a joined buffer. */
typedef struct {
    PyObject *list;
    const uint8_t *buf;
    const uint32_t *klens;
    size_t pos;                     /* buffer mode: offset of the next key */
} kx_keys;

static inline int kx_key_at(kx_keys *ks, size_t i, const uint8_t **p, size_t *n) {
    if (ks->list) {
        PyObject *k = PyList_GET_ITEM(ks->list, (Py_ssize_t)i);
        if (!PyBytes_CheckExact(k)) return -1;
        *p = (const uint8_t *)PyBytes_AS_STRING(k);
        *n = (size_t)PyBytes_GET_SIZE(k);
        if (*n >= ((size_t)1 << KX_KLEN_BITS)) return -1;
    } else {
        *p = ks->buf + ks->pos;
        *n = ks->klens[i];
        ks->pos += *n;
        if (*n >= ((size_t)1 << KX_KLEN_BITS)) return -1;
    }
    return 0;
}

static inline void kx_add_dead(uint64_t sid, uint64_t bytes, uint64_t *sids, uint64_t *dead,
                               size_t *nd, size_t *last) {
    if (*nd && sids[*last] == sid) { dead[*last] += bytes; return; }
    for (size_t d = 0; d < *nd; d++)
        if (sids[d] == sid) { dead[d] += bytes; *last = d; return; }
    sids[*nd] = sid;
    dead[*nd] = bytes;
    *last = (*nd)++;
}

/* Apply n records of one segment, in order: record i (at loc0 + i, rlens[i]
   bytes) puts key i, or deletes it where kinds[i] is a tombstone (kinds NULL:
   all puts). Bytes the batch makes dead are summed per segment into
   dead_sids/dead_bytes (capacity *ndead, at least n + 1; the count comes back
   in *ndead): replaced and deleted versions, and the tombstones themselves.
   Returns 0, -1 for a key that is not bytes (or too long; the keys more than
   KX_AHEAD before it are applied, none after), -2 when out of memory. */
int64_t kx_apply(kx_index *ix, uintptr_t keys_list, const char *kbuf, const uint32_t *klens,
                 size_t n, const char *kinds, uint64_t loc0, const uint32_t *rlens,
                 uint64_t *dead_sids, uint64_t *dead_bytes, size_t *ndead) {
    PyGILState_STATE gil = PyGILState_Ensure();
    kx_keys ks = {(PyObject *)keys_list, (const uint8_t *)kbuf, klens, 0};
    const uint8_t *kp[KX_RING];
    size_t kn[KX_RING];
    uint32_t hs[KX_RING];
    size_t nd = 0, last = 0;
    int64_t err = 0;
    uint64_t sid = loc0 >> 32;
    if (ks.list && (size_t)PyList_GET_SIZE(ks.list) < n) { err = -1; goto out; }
    if (kx_reserve(ix, n) < 0) { err = -2; goto out; }
    /* A software pipeline over the batch (a random access costs hundreds of
       ns on a big table, and a key present needs three: its slot, its entry
       and its stored key): key i + KX_AHEAD is hashed and its slot
       prefetched; a stage later, the entry its slot names if the hash
       matches; a stage after that, the stored key of that entry; key i is
       probed and applied. The peeks are only hints: the probe itself sees
       every change the keys before it made. */
    for (size_t t = 0; t < n + KX_AHEAD; t++) {
        if (t < n) {
            size_t r = t % KX_RING;
            if (kx_key_at(&ks, t, &kp[r], &kn[r]) < 0) { err = -1; goto out; }
            hs[r] = kx_hash(kp[r], kn[r]);
            __builtin_prefetch(&ix->slots[hs[r] & ix->mask], 1);
        }
        if (t >= KX_STAGE && t - KX_STAGE < n) {
            uint32_t h = hs[(t - KX_STAGE) % KX_RING];
            const kx_slot *p = &ix->slots[h & ix->mask];
            if (p->hash == h) __builtin_prefetch(kx_ent(ix, p), 1);
        }
        if (t >= 2 * KX_STAGE && t - 2 * KX_STAGE < n) {
            uint32_t h = hs[(t - 2 * KX_STAGE) % KX_RING];
            const kx_slot *p = &ix->slots[h & ix->mask];
            if (p->hash == h) __builtin_prefetch(kx_key(ix, kx_ent(ix, p)));
        }
        if (t < KX_AHEAD) continue;
        size_t i = t - KX_AHEAD, r = i % KX_RING;
        const uint8_t *key = kp[r];
        size_t kl = kn[r];
        kx_slot *s = kx_find(ix, key, kl, hs[r]);
        uint64_t loc = loc0 + i;
        if (kinds && (uint8_t)kinds[i] == KX_DELETE) {
            kx_add_dead(sid, rlens[i], dead_sids, dead_bytes, &nd, &last);
            if (s->hash) {
                kx_entry *e = kx_ent(ix, s);
                kx_add_dead(e->loc >> 32, e->rlen, dead_sids, dead_bytes, &nd, &last);
                kx_remove(ix, s);
            }
        } else if (s->hash) {
            kx_entry *e = kx_ent(ix, s);
            kx_add_dead(e->loc >> 32, e->rlen, dead_sids, dead_bytes, &nd, &last);
            e->loc = loc;
            e->rlen = rlens[i];
        } else {
            /* A key deleted earlier in this batch left a removed entry: the
               room kx_reserve made is per key of the batch, so it holds. */
            if (kx_fill(ix, s, key, kl, hs[r], loc, rlens[i]) < 0) { err = -2; goto out; }
        }
    }
out:
    *ndead = nd;
    PyGILState_Release(gil);
    return err;
}

/* Compaction: point key i at new_locs[i] where it still points at old_locs[i]
   (a newer write wins). Returns the bytes repointed, -1 for a bad key. */
int64_t kx_repoint(kx_index *ix, uintptr_t keys_list, const uint64_t *old_locs,
                   const uint64_t *new_locs, const uint32_t *new_rlens, size_t n) {
    PyGILState_STATE gil = PyGILState_Ensure();
    kx_keys ks = {(PyObject *)keys_list, NULL, NULL, 0};
    int64_t moved = 0;
    if ((size_t)PyList_GET_SIZE(ks.list) < n) moved = -1;
    for (size_t i = 0; i < n && moved >= 0; i++) {
        const uint8_t *key;
        size_t kl;
        if (kx_key_at(&ks, i, &key, &kl) < 0) { moved = -1; break; }
        kx_slot *s = kx_find(ix, key, kl, kx_hash(key, kl));
        if (s->hash && kx_ent(ix, s)->loc == old_locs[i]) {
            kx_ent(ix, s)->loc = new_locs[i];
            kx_ent(ix, s)->rlen = new_rlens[i];
            moved += new_rlens[i];
        }
    }
    PyGILState_Release(gil);
    return moved;
}

/* out[i] = 1 where key i of the list is indexed, else 0; -1 for a bad key. */
int kx_contains_many(kx_index *ix, uintptr_t keys_list, size_t n, char *out) {
    PyGILState_STATE gil = PyGILState_Ensure();
    kx_keys ks = {(PyObject *)keys_list, NULL, NULL, 0};
    int rc = (size_t)PyList_GET_SIZE(ks.list) < n ? -1 : 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        const uint8_t *key;
        size_t kl;
        if (kx_key_at(&ks, i, &key, &kl) < 0) { rc = -1; break; }
        out[i] = kx_find(ix, key, kl, kx_hash(key, kl))->hash != 0;
    }
    PyGILState_Release(gil);
    return rc;
}

/* Fill out_list (a list of len(index) placeholders) with the keys, oldest entry first. */
int kx_keys_into(kx_index *ix, uintptr_t out_list) {
    PyGILState_STATE gil = PyGILState_Ensure();
    PyObject *out = (PyObject *)out_list;
    int rc = 0;
    if ((size_t)PyList_GET_SIZE(out) != ix->n) { rc = -1; goto done; }
    Py_ssize_t k = 0;
    for (size_t i = 0; i < ix->nent; i++) {
        const kx_entry *e = &ix->ents[i];
        if (!e->hash) continue;
        PyObject *b = PyBytes_FromStringAndSize((const char *)kx_key(ix, e), (Py_ssize_t)kx_klen(e));
        if (!b) { PyErr_Clear(); rc = -2; goto done; }
        PyObject *old = PyList_GET_ITEM(out, k);
        PyList_SET_ITEM(out, k, b);
        Py_XDECREF(old);
        k++;
    }
done:
    PyGILState_Release(gil);
    return rc;
}

/* Live record bytes per segment; returns the number of segments (<= cap, or
   cap + 1 when there are more than cap). */
size_t kx_live_by_segment(kx_index *ix, uint64_t *sids, uint64_t *bytes, size_t cap) {
    size_t nd = 0, last = 0;
    for (size_t i = 0; i < ix->nent; i++) {
        const kx_entry *e = &ix->ents[i];
        if (!e->hash) continue;
        uint64_t sid = e->loc >> 32;
        if (!(nd && sids[last] == sid)) {
            size_t d = 0;
            while (d < nd && sids[d] != sid) d++;
            if (d == nd) {
                if (nd == cap) return cap + 1;
                sids[nd] = sid;
                bytes[nd++] = 0;
            }
            last = d;
        }
        bytes[last] += e->rlen;
    }
    return nd;
}

/* Record batches (statelets/FORMAT.md): crc32c u32 | seq u64 | klen u32 |
   vlen u32 | kind u8 | key | value. Keys and values are read from the
   caller's lists in place: no joined copy, no length arrays built in Python. */
#define KX_HEADER 21

static inline int kx_is_delete(const char *kinds, size_t i) {
    return kinds && (uint8_t)kinds[i] == KX_DELETE;
}

/* Check a batch before anything is written. Returns -1 when every key is
   bytes of at most max_key and every value (but a tombstone's, which is
   ignored) bytes of at most max_value, with the records' total size in
   *rec_bytes; else the index of the first bad pair. */
int64_t kx_measure(uintptr_t keys_list, uintptr_t vals_list, size_t n, const char *kinds,
                   uint64_t max_key, uint64_t max_value, uint64_t *rec_bytes) {
    PyGILState_STATE gil = PyGILState_Ensure();
    PyObject *keys = (PyObject *)keys_list, *vals = (PyObject *)vals_list;
    int64_t bad = -1;
    uint64_t rb = 0;
    if ((size_t)PyList_GET_SIZE(keys) < n || (size_t)PyList_GET_SIZE(vals) < n) bad = 0;
    for (size_t i = 0; i < n && bad < 0; i++) {
        PyObject *k = PyList_GET_ITEM(keys, (Py_ssize_t)i);
        PyObject *v = PyList_GET_ITEM(vals, (Py_ssize_t)i);
        if (!PyBytes_CheckExact(k) || (uint64_t)PyBytes_GET_SIZE(k) > max_key) { bad = (int64_t)i; break; }
        uint64_t vl = 0;
        if (!kx_is_delete(kinds, i)) {
            if (!PyBytes_CheckExact(v) || (uint64_t)PyBytes_GET_SIZE(v) > max_value) { bad = (int64_t)i; break; }
            vl = (uint64_t)PyBytes_GET_SIZE(v);
        }
        rb += KX_HEADER + (uint64_t)PyBytes_GET_SIZE(k) + vl;
    }
    *rec_bytes = rb;
    PyGILState_Release(gil);
    return bad;
}

/* Encode pairs i0, i0 + 1... (at most n) of a batch kx_measure accepted into
   out, stopping before the first record that does not fit in cap bytes (or
   whose hint row does not fit in hcap). Record j gets seq seqs[j] (or
   seq0 + j when seqs is NULL) and kind DELETE with an empty value where kinds
   says so (kinds NULL: all puts). For each, rlens[j] and offs[j] (base + its
   position in out) are filled and its hint row (statelets/FORMAT.md:
   seq u64 | offset u32 | length u32 | klen u32 | kind u8 | key) appended to
   hint. A row is never longer than its record, so hcap >= cap never stops
   early. Returns the number encoded, with the bytes used in out in used[0]
   and in hint in used[1]. */
#define KX_ROW 21

int64_t kx_encode(uintptr_t keys_list, uintptr_t vals_list, size_t i0, size_t n,
                  const char *kinds, uint64_t seq0, const uint64_t *seqs,
                  char *out, size_t cap, uint64_t base,
                  uint32_t *rlens, uint32_t *offs, char *hint, size_t hcap, uint64_t *used) {
    PyGILState_STATE gil = PyGILState_Ensure();
    PyObject *keys = (PyObject *)keys_list, *vals = (PyObject *)vals_list;
    uint8_t *p = (uint8_t *)out, *end = (uint8_t *)out + cap;
    uint8_t *h = (uint8_t *)hint, *hend = (uint8_t *)hint + hcap;
    size_t j = 0;
    for (; j < n; j++) {
        size_t i = i0 + j;
        PyObject *k = PyList_GET_ITEM(keys, (Py_ssize_t)i);
        int del = kx_is_delete(kinds, i);
        uint32_t kl = (uint32_t)PyBytes_GET_SIZE(k);
        uint32_t vl = del ? 0 : (uint32_t)PyBytes_GET_SIZE(PyList_GET_ITEM(vals, (Py_ssize_t)i));
        size_t size = KX_HEADER + (size_t)kl + vl;
        if ((size_t)(end - p) < size || (size_t)(hend - h) < KX_ROW + (size_t)kl) break;
        uint64_t seq = seqs ? seqs[j] : seq0 + j;
        uint8_t kind = del ? KX_DELETE : 1;
        uint32_t off = (uint32_t)(base + (uint64_t)(p - (uint8_t *)out)), rl = (uint32_t)size;
        memcpy(p + 4, &seq, 8);
        memcpy(p + 12, &kl, 4);
        memcpy(p + 16, &vl, 4);
        p[20] = kind;
        memcpy(p + KX_HEADER, PyBytes_AS_STRING(k), kl);
        if (vl) memcpy(p + KX_HEADER + kl, PyBytes_AS_STRING(PyList_GET_ITEM(vals, (Py_ssize_t)i)), vl);
        rlens[j] = rl;
        offs[j] = off;
        memcpy(h, &seq, 8);
        memcpy(h + 8, &off, 4);
        memcpy(h + 12, &rl, 4);
        memcpy(h + 16, &kl, 4);
        h[20] = kind;
        memcpy(h + KX_ROW, PyBytes_AS_STRING(k), kl);
        h += KX_ROW + kl;
        p += size;
    }
    /* The checksums, four records at a time (crc32c_update4), while the
       batch's bytes are still in cache. */
    size_t q = 0;
    for (; q + 4 <= j; q += 4) {
        const uint8_t *rp[4];
        size_t rn[4];
        uint32_t crc[4];
        for (int k = 0; k < 4; k++) {
            rp[k] = (const uint8_t *)out + (offs[q + k] - base) + 4;
            rn[k] = rlens[q + k] - 4;
        }
        crc32c_update4(rp, rn, crc);
        for (int k = 0; k < 4; k++) memcpy((uint8_t *)rp[k] - 4, &crc[k], 4);
    }
    for (; q < j; q++) {
        uint8_t *rec = (uint8_t *)out + (offs[q] - base);
        uint32_t crc = crc32c_update(0, rec + 4, rlens[q] - 4);
        memcpy(rec, &crc, 4);
    }
    used[0] = (uint64_t)(p - (uint8_t *)out);
    used[1] = (uint64_t)(h - (uint8_t *)hint);
    PyGILState_Release(gil);
    return (int64_t)j;
}

/* The columns of n hint rows (nbytes of them, as kx_encode writes them):
   seqs, offsets, lengths, key lengths, kinds, and the keys concatenated into
   keys (key_cap bytes). Returns -1 when the rows fill nbytes exactly and the
   keys key_cap exactly, else the byte offset of the first row that breaks
   that (cut short, or a key longer than the record format allows). */
int64_t kx_hint_columns(const char *rows, size_t nbytes, size_t n, uint64_t *seqs,
                        uint32_t *offs, uint32_t *lens, uint32_t *klens, char *kinds,
                        char *keys, size_t key_cap) {
    const uint8_t *p = (const uint8_t *)rows, *end = p + nbytes;
    size_t kpos = 0;
    for (size_t j = 0; j < n; j++) {
        if ((size_t)(end - p) < KX_ROW) return (int64_t)(p - (const uint8_t *)rows);
        uint32_t kl;
        memcpy(&kl, p + 16, 4);
        if (kl >= ((uint32_t)1 << KX_KLEN_BITS) || (size_t)(end - p) - KX_ROW < kl
                || key_cap - kpos < kl)
            return (int64_t)(p - (const uint8_t *)rows);
        memcpy(&seqs[j], p, 8);
        memcpy(&offs[j], p + 8, 4);
        memcpy(&lens[j], p + 12, 4);
        klens[j] = kl;
        kinds[j] = (char)p[20];
        memcpy(keys + kpos, p + KX_ROW, kl);
        kpos += kl;
        p += KX_ROW + kl;
    }
    if (p != end || kpos != key_cap) return (int64_t)(p - (const uint8_t *)rows);
    return -1;
}

/* A read cache (a dict, or an OrderedDict whose order must stay) takes a
   batch's new values: each keys[i] it holds now maps to vals[i], later pairs
   winning. Only present keys are replaced, through the dict layer: no resize,
   so an OrderedDict's node table stays valid and its order unchanged. One
   lookup per key (the store uses this where the cache holds the whole data
   set, so each lookup is a cache miss; the key objects are prefetched).
   *delta gets the change in cached value bytes. Returns the number of keys
   replaced, or -1 if keys/vals are not lists of bytes of length >= n (or a
   dict operation fails: then nothing is reported and the error is cleared). */
/* Prefetching a dict lookup needs the layout of its keys table, private to
   CPython: the same in 3.11, 3.12 and 3.13 with the GIL (Include/internal/
   pycore_dict.h). Elsewhere the lookups run without prefetch. */
#if PY_VERSION_HEX >= 0x030B0000 && PY_VERSION_HEX < 0x030E0000 && !defined(Py_GIL_DISABLED)
#define KX_DICT_PREFETCH 1
typedef struct {
    Py_ssize_t dk_refcnt;
    uint8_t dk_log2_size;
    uint8_t dk_log2_index_bytes;
    uint8_t dk_kind;
    uint32_t dk_version;
    Py_ssize_t dk_usable;
    Py_ssize_t dk_nentries;
    char dk_indices[];
} kx_dictkeys;
typedef struct { Py_hash_t me_hash; PyObject *me_key; PyObject *me_value; } kx_dictentry;

/* The first index slot a lookup of key j of the list reads, prefetched;
   NULL for a key that is not bytes (its lookup fails later, unhinted). */
static inline const char *kx_dict_peek(const kx_dictkeys *dk, PyObject *keys, size_t j) {
    PyObject *k = PyList_GET_ITEM(keys, (Py_ssize_t)j);
    if (!PyBytes_CheckExact(k)) return NULL;
    Py_hash_t hash = PyObject_Hash(k);                       /* cached, never fails */
    size_t mask = ((size_t)1 << dk->dk_log2_size) - 1;
    unsigned w = dk->dk_log2_index_bytes - dk->dk_log2_size;   /* log2 of the index width */
    const char *slot = dk->dk_indices + (((size_t)hash & mask) << w);
    __builtin_prefetch(slot);
    return slot;
}
static inline Py_ssize_t kx_dict_ix(const kx_dictkeys *dk, const char *slot) {
    switch (dk->dk_log2_index_bytes - dk->dk_log2_size) {
    case 0: return *(const int8_t *)slot;
    case 1: return *(const int16_t *)slot;
    case 2: return *(const int32_t *)slot;
    default: return *(const int64_t *)slot;
    }
}

/* Lookups of keys[0..n) in dict d, three stages ahead: the key object (its
   cached hash), the index slot, the entry. Valid while d's table stays put
   (no key added or removed during the pass). */
typedef struct {
    const kx_dictkeys *dk;
    const kx_dictentry *entries;
    int on;
    const char *slots[16];
} kx_dict_pf;

static inline void kx_dict_pf_init(kx_dict_pf *pf, PyObject *d) {
    pf->dk = (const kx_dictkeys *)((PyDictObject *)d)->ma_keys;
    pf->on = pf->dk->dk_kind == 0 /* general keys */
             && pf->dk->dk_log2_index_bytes >= pf->dk->dk_log2_size
             && pf->dk->dk_log2_index_bytes - pf->dk->dk_log2_size <= 3;
    pf->entries = pf->on ? (const kx_dictentry *)(
        pf->dk->dk_indices + ((size_t)1 << pf->dk->dk_log2_index_bytes)) : NULL;
}

static inline void kx_dict_pf_step(kx_dict_pf *pf, PyObject *keys, size_t i, size_t n) {
    if (!pf->on) {
        if (i + 8 < n) __builtin_prefetch(PyList_GET_ITEM(keys, (Py_ssize_t)(i + 8)));
        return;
    }
    const kx_dictkeys *dk = pf->dk;
    if (i + 16 < n) __builtin_prefetch(PyList_GET_ITEM(keys, (Py_ssize_t)(i + 16)));
    if (i == 0)                            /* prime the pipeline */
        for (size_t j = 0; j < 8 && j < n; j++) pf->slots[j & 15] = kx_dict_peek(dk, keys, j);
    if (i + 8 < n) pf->slots[(i + 8) & 15] = kx_dict_peek(dk, keys, i + 8);
    if (i + 4 < n && pf->slots[(i + 4) & 15]) {
        Py_ssize_t ix = kx_dict_ix(dk, pf->slots[(i + 4) & 15]);
        if (ix >= 0 && ix < dk->dk_nentries) __builtin_prefetch(&pf->entries[ix]);
    }
}
#else
typedef struct { int unused; } kx_dict_pf;
static inline void kx_dict_pf_init(kx_dict_pf *pf, PyObject *d) { (void)pf; (void)d; }
static inline void kx_dict_pf_step(kx_dict_pf *pf, PyObject *keys, size_t i, size_t n) {
    (void)pf;
    if (i + 8 < n) __builtin_prefetch(PyList_GET_ITEM(keys, (Py_ssize_t)(i + 8)));
}
#endif

int64_t kx_refresh_cached(uintptr_t cache, uintptr_t keys_list, uintptr_t vals_list, size_t n,
                          int64_t *delta) {
    PyGILState_STATE gil = PyGILState_Ensure();
    PyObject *d = (PyObject *)cache, *keys = (PyObject *)keys_list, *vals = (PyObject *)vals_list;
    int64_t hits = 0, dl = 0;
    if (!PyDict_Check(d) || !PyList_Check(keys) || !PyList_Check(vals)
            || (size_t)PyList_GET_SIZE(keys) < n || (size_t)PyList_GET_SIZE(vals) < n) {
        PyGILState_Release(gil);
        return -1;
    }
    /* The table stays put: only present keys are set. */
    kx_dict_pf pf;
    kx_dict_pf_init(&pf, d);
    for (size_t i = 0; i < n; i++) {
        kx_dict_pf_step(&pf, keys, i, n);
        PyObject *k = PyList_GET_ITEM(keys, (Py_ssize_t)i);
        PyObject *v = PyList_GET_ITEM(vals, (Py_ssize_t)i);
        PyObject *old = PyDict_GetItemWithError(d, k);          /* borrowed */
        if (old == NULL) {
            if (PyErr_Occurred()) { PyErr_Clear(); hits = -1; break; }
            continue;
        }
        if (!PyBytes_Check(old) || !PyBytes_Check(v)) { hits = -1; break; }
        Py_ssize_t ol = PyBytes_GET_SIZE(old);
        if (PyDict_SetItem(d, k, v) < 0) { PyErr_Clear(); hits = -1; break; }
        dl += (int64_t)PyBytes_GET_SIZE(v) - (int64_t)ol;
        hits++;
    }
    *delta = dl;
    PyGILState_Release(gil);
    return hits;
}

/* The store's read path for a batch of keys, before the index: each key is
   looked up in the write buffer wbuf, then in flushing (0: none), then in
   the read cache. out_list (a list of n Nones) gets the values found; a
   value that is the tombstone object is a deletion and leaves None. The
   indexes of keys found nowhere go to miss (their count is returned) and
   the number found in the cache to *hits; a key found in the cache is added
   to the set ref (0: none; CLOCK's reference marks). Returns -1 (error
   cleared, out_list partly filled) when a key is not bytes or the
   arguments are not what they should be. */
int64_t kx_lookup_cached(uintptr_t keys_list, size_t n, uintptr_t wbuf, uintptr_t flushing,
                         uintptr_t cache, uintptr_t tombstone, uintptr_t ref, uintptr_t out_list,
                         uint32_t *miss, uint64_t *hits) {
    PyGILState_STATE gil = PyGILState_Ensure();
    PyObject *keys = (PyObject *)keys_list, *w = (PyObject *)wbuf, *f = (PyObject *)flushing;
    PyObject *c = (PyObject *)cache, *tomb = (PyObject *)tombstone, *r = (PyObject *)ref;
    PyObject *out = (PyObject *)out_list;
    int64_t nmiss = 0;
    uint64_t nhit = 0;
    if (!PyList_Check(keys) || !PyList_Check(out) || (size_t)PyList_GET_SIZE(keys) < n
            || (size_t)PyList_GET_SIZE(out) < n || !PyDict_Check(w) || (f && !PyDict_Check(f))
            || !PyDict_Check(c) || (r && !PySet_Check(r))) {
        PyGILState_Release(gil);
        return -1;
    }
    int use_w = PyDict_GET_SIZE(w) > 0, use_f = f && PyDict_GET_SIZE(f) > 0;
    kx_dict_pf pf;                          /* over the cache: the big one; no key added */
    kx_dict_pf_init(&pf, c);
    for (size_t i = 0; i < n; i++) {
        kx_dict_pf_step(&pf, keys, i, n);
        PyObject *k = PyList_GET_ITEM(keys, (Py_ssize_t)i);
        if (!PyBytes_CheckExact(k)) { nmiss = -1; break; }
        PyObject *v = use_w ? PyDict_GetItemWithError(w, k) : NULL;     /* borrowed */
        if (!v && use_f) v = PyDict_GetItemWithError(f, k);
        int cached = 0;
        if (!v) {
            v = PyDict_GetItemWithError(c, k);
            cached = v != NULL;
        }
        if (!v) {
            if (PyErr_Occurred()) { PyErr_Clear(); nmiss = -1; break; }
            miss[nmiss++] = (uint32_t)i;
            continue;
        }
        if (v == tomb) continue;
        if (cached) {
            nhit++;
            if (r && PySet_Add(r, k) < 0) { PyErr_Clear(); nmiss = -1; break; }
        }
        Py_INCREF(v);
        PyObject *old = PyList_GET_ITEM(out, (Py_ssize_t)i);
        PyList_SET_ITEM(out, (Py_ssize_t)i, v);
        Py_XDECREF(old);
    }
    *hits = nhit;
    PyGILState_Release(gil);
    return nmiss;
}
"""

# Read by path: cffi runs this file with exec(), not as a package import.
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "uring",
                       "crc32c.h")) as _f:
    SOURCE = SOURCE.replace("/* @CRC32C@ (uring/crc32c.h) */", _f.read())

ffibuilder = FFI()
ffibuilder.cdef(CDEF)
# Not the limited API: the batch calls walk lists and bytes with CPython's macros.
ffibuilder.set_source("statelets._index_c", SOURCE, py_limited_api=False,
                      define_macros=[("_CFFI_NO_LIMITED_API", None)],
                      extra_compile_args=["-O2", "-std=gnu11"])

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
