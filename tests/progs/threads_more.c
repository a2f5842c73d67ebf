/* More of what threaded programs do: a barrier; a semaphore posted by a
 * detached thread; a timed wait on a condition nobody signals (it times
 * out); pthread_kill of a thread waiting on a condition variable (its
 * handler runs, the wait goes on); a timed wait that ends while another
 * thread only yields; and the main thread leaving with
 * pthread_exit while the last worker ends the process with exit(3). */
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <time.h>
#include "warptest.h"

static pthread_barrier_t barrier;
static sem_t done;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t never = PTHREAD_COND_INITIALIZER;
static pthread_cond_t go = PTHREAD_COND_INITIALIZER;
static volatile sig_atomic_t handled;
static int released, arrived;

static void on_usr1(int sig)
{
	(void)sig;
	handled = 1;
}

static void *at_barrier(void *arg)
{
	(void)arg;
	int r = pthread_barrier_wait(&barrier);
	CHECK(r == 0 || r == PTHREAD_BARRIER_SERIAL_THREAD);
	return NULL;
}

static void *detached(void *arg)
{
	(void)arg;
	CHECK(sem_post(&done) == 0);
	return NULL;
}

static void *waiter(void *arg)
{
	(void)arg;
	CHECK(pthread_mutex_lock(&lock) == 0);
	arrived = 1;
	while (!released)
		CHECK(pthread_cond_wait(&go, &lock) == 0);
	CHECK(pthread_mutex_unlock(&lock) == 0);
	printf("waiter: released, handler ran %d\n", (int)handled);
	fflush(stdout);
	return NULL;
}

static volatile int timed_out;

static void *timed_waiter(void *arg)
{
	(void)arg;
	struct timespec until = ms_from_now(CLOCK_MONOTONIC, 30);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_t c;
	pthread_cond_init(&c, &ca);
	pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
	pthread_mutex_lock(&m);
	int r = pthread_cond_timedwait(&c, &m, &until);
	pthread_mutex_unlock(&m);
	timed_out = r == ETIMEDOUT;
	return NULL;
}

static void *last(void *arg)
{
	pthread_join((pthread_t)arg, NULL);
	puts("last: main has gone; exiting with 3");
	fflush(stdout);
	exit(3);
}

int main(void)
{
	pthread_t t[3];
	CHECK(pthread_barrier_init(&barrier, NULL, 4) == 0);
	for (int i = 0; i < 3; i++)
		CHECK(pthread_create(&t[i], NULL, at_barrier, NULL) == 0);
	int r = pthread_barrier_wait(&barrier);
	CHECK(r == 0 || r == PTHREAD_BARRIER_SERIAL_THREAD);
	for (int i = 0; i < 3; i++)
		CHECK(pthread_join(t[i], NULL) == 0);
	puts("barrier: all four passed");

	CHECK(sem_init(&done, 0, 0) == 0);
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_t d;
	CHECK(pthread_create(&d, &attr, detached, NULL) == 0);
	CHECK(sem_wait(&done) == 0);
	puts("semaphore: posted by the detached thread");

	struct timespec until = ms_from_now(CLOCK_REALTIME, 50);
	CHECK(pthread_mutex_lock(&lock) == 0);
	r = pthread_cond_timedwait(&never, &lock, &until);
	CHECK(pthread_mutex_unlock(&lock) == 0);
	printf("timed wait: %s\n", r == ETIMEDOUT ? "ETIMEDOUT" : "??");

	struct sigaction sa = {0};
	sa.sa_handler = on_usr1;
	sa.sa_flags = SA_RESTART;
	CHECK(sigaction(SIGUSR1, &sa, NULL) == 0);
	pthread_t w;
	CHECK(pthread_create(&w, NULL, waiter, NULL) == 0);
	for (;;) {
		CHECK(pthread_mutex_lock(&lock) == 0);
		int a = arrived;
		CHECK(pthread_mutex_unlock(&lock) == 0);
		if (a)
			break;
		sched_yield();
	}
	CHECK(pthread_kill(w, SIGUSR1) == 0);
	while (!handled)
		sched_yield();
	CHECK(pthread_mutex_lock(&lock) == 0);
	released = 1;
	CHECK(pthread_cond_signal(&go) == 0);
	CHECK(pthread_mutex_unlock(&lock) == 0);
	CHECK(pthread_join(w, NULL) == 0);

	/* A timed wait in another thread ends while this one only yields. */
	pthread_t tw;
	CHECK(pthread_create(&tw, NULL, timed_waiter, NULL) == 0);
	while (!timed_out)
		sched_yield();
	CHECK(pthread_join(tw, NULL) == 0);
	puts("timed wait beside a yielding thread: ETIMEDOUT");

	pthread_t l;
	CHECK(pthread_create(&l, NULL, last, (void *)pthread_self()) == 0);
	puts("main: leaving with pthread_exit");
	fflush(stdout);
	pthread_exit(NULL);
}
