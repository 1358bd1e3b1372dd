// LMDB 0.9.31, built from source with RecDB's hardening patch (Sources/CLMDB/patches/).
// Its sources are not committed: scripts/fetch-lmdb.sh (run by `make deps`, `make test`, `make demo`)
// downloads the pinned release and patches it into Sources/CLMDB/vendor/.
#if __has_include("../vendor/lmdb.h")
#include "../vendor/lmdb.h"
#else
#error "LMDB's sources are missing: run scripts/fetch-lmdb.sh (or make deps) before swift build"
#endif
