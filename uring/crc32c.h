/* crc32c (Castagnoli) for the state store's records, shared by uring's and
   statelets' cffi modules (each builder pastes this file into its source):
   the SSE4.2 instruction where the CPU has it, else a byte-wise table. */
#include <stdint.h>
#include <string.h>

static uint32_t crc_table[256];
static int crc_mode = -1;   /* -1 unknown, 0 table, 1 hardware */

static void crc_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0x82F63B78U & (0U - (c & 1U)));
        crc_table[i] = c;
    }
#if defined(__x86_64__)
    __builtin_cpu_init();
    crc_mode = __builtin_cpu_supports("sse4.2") ? 1 : 0;
#else
    crc_mode = 0;
#endif
}

#if defined(__x86_64__)
__attribute__((target("sse4.2")))
static uint32_t crc_hw(uint32_t c, const uint8_t *p, size_t n) {
    while (n >= 8) { uint64_t v; memcpy(&v, p, 8); c = (uint32_t)__builtin_ia32_crc32di(c, v); p += 8; n -= 8; }
    while (n--) c = __builtin_ia32_crc32qi(c, *p++);
    return c;
}
#endif

static uint32_t crc32c_update(uint32_t crc, const uint8_t *buf, size_t len) {
    if (crc_mode < 0) crc_init();
    uint32_t c = ~crc;
#if defined(__x86_64__)
    if (crc_mode == 1) return ~crc_hw(c, buf, len);
#endif
    while (len--) c = crc_table[(c ^ *buf++) & 0xFF] ^ (c >> 8);
    return ~c;
}

/* Four independent CRCs at once (the state store's record batches): the
   crc32 instruction's latency is three cycles and its throughput one, so a
   single chain leaves it two thirds idle. */
#if defined(__x86_64__)
__attribute__((target("sse4.2"), unused))
static void crc_hw4(const uint8_t *const p[4], const size_t n[4], uint32_t out[4]) {
    uint32_t c0 = ~0U, c1 = ~0U, c2 = ~0U, c3 = ~0U;
    size_t m = n[0];
    for (int k = 1; k < 4; k++) if (n[k] < m) m = n[k];
    size_t off = 0;
    for (; off + 8 <= m; off += 8) {
        uint64_t v0, v1, v2, v3;
        memcpy(&v0, p[0] + off, 8); memcpy(&v1, p[1] + off, 8);
        memcpy(&v2, p[2] + off, 8); memcpy(&v3, p[3] + off, 8);
        c0 = (uint32_t)__builtin_ia32_crc32di(c0, v0);
        c1 = (uint32_t)__builtin_ia32_crc32di(c1, v1);
        c2 = (uint32_t)__builtin_ia32_crc32di(c2, v2);
        c3 = (uint32_t)__builtin_ia32_crc32di(c3, v3);
    }
    out[0] = ~crc_hw(c0, p[0] + off, n[0] - off);
    out[1] = ~crc_hw(c1, p[1] + off, n[1] - off);
    out[2] = ~crc_hw(c2, p[2] + off, n[2] - off);
    out[3] = ~crc_hw(c3, p[3] + off, n[3] - off);
}
#endif

__attribute__((unused))
static void crc32c_update4(const uint8_t *const p[4], const size_t n[4], uint32_t out[4]) {
    if (crc_mode < 0) crc_init();
#if defined(__x86_64__)
    if (crc_mode == 1) { crc_hw4(p, n, out); return; }
#endif
    for (int k = 0; k < 4; k++) out[k] = crc32c_update(0, p[k], n[k]);
}
