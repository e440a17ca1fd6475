/*
 * sanitizer: hooks for the sanitizer builds (make asan), nothing otherwise.
 *
 * LeakSanitizer checks a process when it exits through exit() or a return
 * from main(). batchd's api process and workers end with _exit() on
 * purpose (they are forked children: the supervisor's atexit handlers and
 * stdio buffers are not theirs to run), so LSan never looked at them, and
 * the api process is where every request's memory lives. san_leak_check()
 * runs the check at the point of an orderly exit instead: leaks are
 * reported like any LSan report (to ASAN_OPTIONS' log_path, which the
 * sanitizer runs collect); the process's exit status is left alone, so the
 * supervisor's classification of the exit does not change.
 *
 * Process and threads: any process; call it once, when the process has
 * freed what it owns and is about to _exit(), with no other thread left
 * running.
 */
#ifndef BATCHD_SANITIZER_H
#define BATCHD_SANITIZER_H

#if defined(__SANITIZE_ADDRESS__)
#define BATCHD_LSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(leak_sanitizer)
#define BATCHD_LSAN 1
#endif
#endif

#ifdef BATCHD_LSAN
#include <sanitizer/lsan_interface.h>
#endif

/* Runs LeakSanitizer now (sanitizer builds only; a no-op otherwise). */
static inline void san_leak_check(void)
{
#ifdef BATCHD_LSAN
    (void)__lsan_do_recoverable_leak_check();
#endif
}

#endif
