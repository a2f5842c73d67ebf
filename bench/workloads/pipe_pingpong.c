/* Two threads hand a byte back and forth N times over two pipes: each
 * read waits for the other thread's write, so under warpd every hand-over
 * is a deferred broker call (the waiting thread parks, the other runs). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static int ab[2], ba[2];
static long rounds;

static void *echo(void *arg)
{
	(void)arg;
	char c;
	for (long i = 0; i < rounds; i++) {
		if (read(ab[0], &c, 1) != 1 || write(ba[1], &c, 1) != 1)
			exit(1);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	rounds = argc > 1 ? atol(argv[1]) : 10000;
	if (pipe(ab) || pipe(ba))
		return 1;
	pthread_t t;
	pthread_create(&t, NULL, echo, NULL);
	char c = 'x';
	for (long i = 0; i < rounds; i++) {
		if (write(ab[1], &c, 1) != 1 || read(ba[0], &c, 1) != 1)
			return 1;
	}
	pthread_join(t, NULL);
	printf("%ld round trips\n", rounds);
	return 0;
}
