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
