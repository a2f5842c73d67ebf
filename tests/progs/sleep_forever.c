/* Prints "ready" and then blocks, for the Ctrl-C tests:
 *   sleep_forever read:  blocks in read() on stdin; on end of input prints
 *                        "eof" and exits 0.
 *   sleep_forever pause: blocks in pause() for ever.
 *   sleep_forever threads: a thread waits on a condition variable for
 *                        ever and the main thread waits to join it. */
#include <pthread.h>
#include <signal.h>
#include "warptest.h"

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t never = PTHREAD_COND_INITIALIZER;

static void *wait_forever(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&lock);
	for (;;)
		pthread_cond_wait(&never, &lock);
	return NULL;
}

int main(int argc, char **argv)
{
	CHECK(argc == 2);
	int use_read = strcmp(argv[1], "read") == 0;
	int threads = strcmp(argv[1], "threads") == 0;
	CHECK(use_read || threads || strcmp(argv[1], "pause") == 0);
	CHECK(signal(SIGINT, SIG_DFL) != SIG_ERR);
	pthread_t t;
	if (threads)
		CHECK(pthread_create(&t, NULL, wait_forever, NULL) == 0);
	puts("ready");
	fflush(stdout);
	if (threads) {
		pthread_join(t, NULL);
		return 1;
	}
	if (use_read) {
		char buf[256];
		for (;;) {
			ssize_t n = read(0, buf, sizeof buf);
			if (n < 0 && errno == EINTR)
				continue;
			CHECK(n >= 0);
			if (n == 0)
				break;
			printf("read %zd bytes\n", n);
			fflush(stdout);
		}
		puts("eof");
		return 0;
	}
	for (;;)
		pause();
}
