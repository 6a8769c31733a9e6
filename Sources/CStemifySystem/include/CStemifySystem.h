// Allocator settings applied when the binary loads (CStemifySystem.c), and the engine's
// per-thread parallel width.
#ifdef __linux__
#include <malloc.h>
#endif

/// The parallel width of the engine's loops on this thread; 0 when none was set.
int stemify_thread_width(void);
/// Sets it for this thread (0 restores the process-wide width).
void stemify_set_thread_width(int width);
