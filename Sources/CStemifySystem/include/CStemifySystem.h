// System calls the engine tunes at start that Swift's Glibc module does not export.
#ifdef __linux__
#include <malloc.h>
#endif
