/* execve from a process with threads: the other threads end, and the new
 * program starts as a process with one thread whose tid is the pid. */
#include <pthread.h>
#include <sys/syscall.h>
#include "warptest.h"

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t never = PTHREAD_COND_INITIALIZER;
static int started;

static void *forever(void *arg)
{
	(void)arg;
	CHECK(pthread_mutex_lock(&lock) == 0);
	started = 1;
	for (;;)
		pthread_cond_wait(&never, &lock);
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc > 1) {
		printf("after exec: tid is the pid %s\n", (pid_t)syscall(SYS_gettid) == getpid() ? "yes" : "NO");
		puts("EXIT-SUCCESS");
		return 0;
	}
	pthread_t t;
	CHECK(pthread_create(&t, NULL, forever, NULL) == 0);
	for (;;) {
		CHECK(pthread_mutex_lock(&lock) == 0);
		int s = started;
		CHECK(pthread_mutex_unlock(&lock) == 0);
		if (s)
			break;
		sched_yield();
	}
	puts("exec with a thread waiting");
	fflush(stdout);
	execl("/proc/self/exe", argv[0], "again", (char *)NULL);
	perror("execl");
	return 1;
}
