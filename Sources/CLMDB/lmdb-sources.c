// Makes a build without the fetched LMDB sources fail with instructions instead of a link error
// (SwiftPM compiles vendor/mdb.c and vendor/midl.c themselves when they are there).
#include "include/CLMDB.h"
