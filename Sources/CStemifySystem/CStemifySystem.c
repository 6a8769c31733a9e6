#include "CStemifySystem.h"

#if defined(__linux__) && defined(__GLIBC__)
// Allocator settings the engine wants before any thread allocates, so they run when the binary
// loads. Activations are tens to hundreds of MB and a separation runs on a worker thread:
// glibc gives such a thread its own arena, whose heaps are at most 64 MB, and maps anything
// larger afresh on every allocation (page-faulted and zeroed by the kernel each op: 1.8 M
// faults for SCNet large on 2 s of audio). One arena keeps them on the main heap; the
// thresholds keep freed blocks there for the next op instead of returning them. Tensors of
// 32 MB and up are mapped on their own: on the heap they left holes the next ones did not fit,
// and a Demucs v3 member with frequency bands peaked at 1334 MB with 128 MB there, 1106 MB
// with 32 MB (8 MB: 1020 MB for six times the page faults; docs/performance.md).
__attribute__((constructor)) static void stemify_tune_allocator(void) {
    mallopt(M_ARENA_MAX, 1);
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
}

// The heap's free blocks grow from chunk to chunk where activations are hundreds of MB and
// their sizes interleave differently each time: between the 44 s chunks of a Demucs v3 member
// on a 10-minute song, resident memory rose from 400 MB before the first to 1010 MB from the
// tenth on, and its peak reached 1416 MB (1150–1175 MB with this). Handing the free pages back
// before each such chunk (`Lanes`) bounds that at what one chunk leaves behind.
void stemify_release_free_memory(void) { malloc_trim(0); }
#else
void stemify_release_free_memory(void) {}
#endif

// A separation may run several chunks at once, each on its own thread with a share of the
// cores; the engine's parallel loops on that thread read their width here (0: the global one).
static _Thread_local int stemify_width;

int stemify_thread_width(void) { return stemify_width; }

void stemify_set_thread_width(int width) { stemify_width = width; }
