// Allocator settings applied when the binary loads (CStemifySystem.c); nothing to call.
#ifdef __linux__
#include <malloc.h>
#endif
