// CRC-32C for RecDB's stored values. Every stored vector, tensor and record carries one, and
// the zero-copy serving path checks it per access, so it must cost nanoseconds: on x86-64 the
// SSE4.2 crc32 instruction (8 bytes a cycle or so), chosen at run time because the package has no
// unsafe compiler flags; elsewhere a slicing-by-8 table (about 1 byte a cycle).
#include "cchecksum.h"
#include <pthread.h>
#include <string.h>

#if defined(__x86_64__)
#include <cpuid.h>
#include <nmmintrin.h>
#define RECDB_HAVE_SSE42_PATH 1
#endif

static uint32_t table[8][256];
static pthread_once_t table_once = PTHREAD_ONCE_INIT;

static void build_table(void) {
    const uint32_t poly = 0x82F63B78u;  // reflected Castagnoli polynomial
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ poly : c >> 1;
        table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++) {
        for (int t = 1; t < 8; t++) table[t][i] = (table[t - 1][i] >> 8) ^ table[0][table[t - 1][i] & 0xff];
    }
}

uint32_t recdb_crc32c_software(uint32_t crc, const void *data, size_t count) {
    pthread_once(&table_once, build_table);
    const unsigned char *p = (const unsigned char *)data;
    uint32_t c = ~crc;
    while (count >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);  // unaligned-safe; little-endian hosts only (x86-64, arm64)
        uint32_t lo = (uint32_t)w ^ c, hi = (uint32_t)(w >> 32);
        c = table[7][lo & 0xff] ^ table[6][(lo >> 8) & 0xff] ^ table[5][(lo >> 16) & 0xff] ^ table[4][lo >> 24] ^
            table[3][hi & 0xff] ^ table[2][(hi >> 8) & 0xff] ^ table[1][(hi >> 16) & 0xff] ^ table[0][hi >> 24];
        p += 8;
        count -= 8;
    }
    while (count--) c = (c >> 8) ^ table[0][(c ^ *p++) & 0xff];
    return ~c;
}

#ifdef RECDB_HAVE_SSE42_PATH
__attribute__((target("sse4.2")))
static uint32_t crc32c_sse42(uint32_t crc, const void *data, size_t count) {
    const unsigned char *p = (const unsigned char *)data;
    uint64_t c = ~crc;
    while (count >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        c = _mm_crc32_u64(c, w);
        p += 8;
        count -= 8;
    }
    uint32_t c32 = (uint32_t)c;
    while (count--) c32 = _mm_crc32_u8(c32, *p++);
    return ~c32;
}

// 0 unknown, 1 hardware, 2 software. Races only write the same value.
static int path_choice = 0;

static int choose_path(void) {
    unsigned a = 0, b = 0, c = 0, d = 0;
    int hardware = __get_cpuid(1, &a, &b, &c, &d) && (c & bit_SSE4_2);
    return hardware ? 1 : 2;
}
#endif

uint32_t recdb_crc32c(uint32_t crc, const void *data, size_t count) {
#ifdef RECDB_HAVE_SSE42_PATH
    int choice = __atomic_load_n(&path_choice, __ATOMIC_RELAXED);
    if (choice == 0) {
        choice = choose_path();
        __atomic_store_n(&path_choice, choice, __ATOMIC_RELAXED);
    }
    if (choice == 1) return crc32c_sse42(crc, data, count);
#endif
    return recdb_crc32c_software(crc, data, count);
}
