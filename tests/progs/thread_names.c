/* Thread names: prctl(PR_SET_NAME) and pthread_setname_np on the calling
 * thread, PR_GET_NAME back (truncated to 15 bytes as Linux keeps them),
 * a new thread's name inherited from its creator, an unreadable name
 * pointer (EFAULT). `names_ready` is where a debugger sees every thread
 * named. */
#define _GNU_SOURCE
#include <pthread.h>
#include <sys/prctl.h>
#include "warptest.h"

static pthread_barrier_t printed, named, done;

static void say_name(const char *who)
{
	char name[16] = {0};
	CHECK(prctl(PR_GET_NAME, name) == 0);
	printf("%s: %s\n", who, name);
}

__attribute__((noinline)) void names_ready(void)
{
	__asm__ volatile("" ::: "memory");
}

static void *worker(void *arg)
{
	long n = (long)arg;
	say_name(n == 0 ? "worker 0 inherited" : "worker 1 inherited");
	fflush(stdout);
	pthread_barrier_wait(&printed);
	char name[32];
	snprintf(name, sizeof name, "worker-%ld", n);
	CHECK(pthread_setname_np(pthread_self(), name) == 0);
	pthread_barrier_wait(&named);
	pthread_barrier_wait(&done);
	return NULL;
}

int main(void)
{
	CHECK(prctl(PR_SET_NAME, "a-name-longer-than-fifteen") == 0);
	say_name("main");
	errno = 0;
	printf("bad pointer: %s\n", result_text(prctl(PR_SET_NAME, (void *)8)));
	pthread_t t[2];
	pthread_barrier_init(&printed, NULL, 2);
	pthread_barrier_init(&named, NULL, 3);
	pthread_barrier_init(&done, NULL, 3);
	for (long i = 0; i < 2; i++) {
		CHECK(pthread_create(&t[i], NULL, worker, (void *)i) == 0);
		/* One at a time, so the inherited lines come in order. */
		pthread_barrier_wait(&printed);
	}
	pthread_barrier_wait(&named);
	names_ready();
	pthread_barrier_wait(&done);
	for (int i = 0; i < 2; i++)
		CHECK(pthread_join(t[i], NULL) == 0);
	say_name("main again");
	puts("EXIT-SUCCESS");
	return 0;
}
