#include "cfaiss.h"
extern "C" int cfaiss_version(void) { return 1; }
