#ifndef RECDB_CPREFETCH_H
#define RECDB_CPREFETCH_H

/// A hint to start loading the cache line at `address` for reading (no fault, no effect on results).
/// Swift has no prefetch builtin; static inline so the call compiles to the one instruction. The bulk
/// importer prefetches the id-map slots of the rows it parses a few rows ahead of looking them up (the
/// user map of an app-sized import, 1M users: 32 MiB, misses the caches on nearly every row); the sampled
/// softmax prefetches the item-table rows it is about to gather (a 1M-item table is 256 MB).
static inline void recdb_prefetch(const void *address) {
    __builtin_prefetch(address, 0, 3);
}

#endif
