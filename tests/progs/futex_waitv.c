/* futex_waitv: a thread waits on two futexes at once and is woken by a
 * FUTEX_WAKE on the second (the call returns its index); EAGAIN when a
 * value already differs; EINVAL for bad flags; a timeout. */
#define _GNU_SOURCE
#include <linux/futex.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <time.h>
#include "warptest.h"

#ifndef SYS_futex_waitv
#define SYS_futex_waitv 449
#endif

struct waitv {
	uint64_t val;
	uint64_t uaddr;
	uint32_t flags;
	uint32_t reserved;
};

static uint32_t f1, f2;
static volatile int waiting;
static long woke;

static void *waiter(void *arg)
{
	(void)arg;
	struct waitv w[2] = { { 0, (uintptr_t)&f1, 2 | 128, 0 }, { 0, (uintptr_t)&f2, 2 | 128, 0 } };
	waiting = 1;
	woke = syscall(SYS_futex_waitv, w, 2, 0, NULL, 0);
	return NULL;
}

int main(void)
{
	pthread_t t;
	CHECK(pthread_create(&t, NULL, waiter, NULL) == 0);
	while (!waiting)
		sched_yield();
	struct timespec nap = { 0, 50 * 1000 * 1000 };
	CHECK(nanosleep(&nap, NULL) == 0);
	f2 = 1;
	CHECK(syscall(SYS_futex, &f2, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0) == 1);
	CHECK(pthread_join(t, NULL) == 0);
	printf("woken by the second futex: index %ld\n", woke);

	struct waitv w[1] = { { 5, (uintptr_t)&f1, 2 | 128, 0 } };
	errno = 0;
	long r = syscall(SYS_futex_waitv, w, 1, 0, NULL, 0);
	printf("a value that differs: %s\n", r < 0 ? errname(errno) : "waited");
	errno = 0;
	r = syscall(SYS_futex_waitv, w, 1, 1, NULL, 0);
	printf("bad flags: %s\n", r < 0 ? errname(errno) : "waited");
	w[0].val = 0;
	struct timespec until = ms_from_now(CLOCK_MONOTONIC, 20);
	errno = 0;
	r = syscall(SYS_futex_waitv, w, 1, 0, &until, CLOCK_MONOTONIC);
	printf("timeout: %s\n", r < 0 ? errname(errno) : "woken");
	return 0;
}
