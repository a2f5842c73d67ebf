/* Robust mutexes: their owner exits holding them. The next locker gets
 * EOWNERDEAD, whether it locks after the owner is gone or was already
 * waiting for the lock when the owner exited. */
#include <pthread.h>
#include <sched.h>
#include <time.h>
#include "warptest.h"

static pthread_mutex_t m;
static volatile int locked;

static void *owner(void *arg)
{
	CHECK(pthread_mutex_lock(&m) == 0);
	locked = 1;
	if (arg) {
		/* Let the main thread start waiting for the lock. */
		struct timespec ts = { 0, 20 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	return NULL; /* exits holding m */
}

static void round_trip(const char *what, int wait_first)
{
	pthread_t t;
	locked = 0;
	CHECK(pthread_create(&t, NULL, owner, wait_first ? (void *)1 : NULL) == 0);
	if (!wait_first)
		CHECK(pthread_join(t, NULL) == 0);
	else
		while (!locked)
			sched_yield();
	int r = pthread_mutex_lock(&m);
	printf("%s: lock returns %s\n", what, errname(r));
	if (r == EOWNERDEAD) {
		CHECK(pthread_mutex_consistent(&m) == 0);
		CHECK(pthread_mutex_unlock(&m) == 0);
	}
	if (wait_first)
		CHECK(pthread_join(t, NULL) == 0);
	CHECK(pthread_mutex_lock(&m) == 0);
	CHECK(pthread_mutex_unlock(&m) == 0);
}

int main(void)
{
	pthread_mutexattr_t a;
	CHECK(pthread_mutexattr_init(&a) == 0);
	CHECK(pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST) == 0);
	CHECK(pthread_mutex_init(&m, &a) == 0);
	round_trip("owner gone", 0);
	round_trip("waiting when the owner exits", 1);
	puts("EXIT-SUCCESS");
	return 0;
}
