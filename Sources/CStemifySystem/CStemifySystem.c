#include "CStemifySystem.h"

#if defined(__linux__) && defined(__GLIBC__)
// Allocator settings the engine wants before any thread allocates, so they run when the binary
// loads. Activations are tens to hundreds of MB and a separation runs on a worker thread:
// glibc gives such a thread its own arena, whose heaps are at most 64 MB, and maps anything
// larger afresh on every allocation (page-faulted and zeroed by the kernel each op: 1.8 M
// faults for SCNet large on 2 s of audio). One arena keeps them on the main heap; the
// thresholds keep freed blocks there for the next op instead of returning them. Only the
// largest tensors (128 MB and up: the first levels of a 44 s v3 chunk) are mapped on their
// own: on the heap they left holes too small for the next ones and raised a v3 member's peak
// RSS by 250 MB, for few faults (433 K against 398 K for a 60 s song).
__attribute__((constructor)) static void stemify_tune_allocator(void) {
    mallopt(M_ARENA_MAX, 1);
    mallopt(M_MMAP_THRESHOLD, 128 << 20);
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
}
#endif

// A separation may run several chunks at once, each on its own thread with a share of the
// cores; the engine's parallel loops on that thread read their width here (0: the global one).
static _Thread_local int stemify_width;

int stemify_thread_width(void) { return stemify_width; }

void stemify_set_thread_width(int width) { stemify_width = width; }
