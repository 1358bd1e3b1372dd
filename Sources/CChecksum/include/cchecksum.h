#ifndef RECDB_CCHECKSUM_H
#define RECDB_CCHECKSUM_H
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// CRC-32C (Castagnoli, the polynomial of iSCSI/ext4/LevelDB), continuing from `crc` (0 to start):
/// recdb_crc32c(recdb_crc32c(0, a, n), b, m) == the CRC of a followed by b.
/// Uses the SSE4.2 `crc32` instruction when the CPU has it, else a slicing-by-8 table.
uint32_t recdb_crc32c(uint32_t crc, const void *data, size_t count);

/// The portable table path alone (tests compare it with the hardware path).
uint32_t recdb_crc32c_software(uint32_t crc, const void *data, size_t count);

#ifdef __cplusplus
}
#endif
#endif
