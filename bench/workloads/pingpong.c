/* Two threads hand a token back and forth N times through a mutex and two
 * condition variables: every hand-over is a futex wake and a futex wait,
 * so this measures thread switches. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t changed = PTHREAD_COND_INITIALIZER;
static long turn, rounds;

static void *player(void *arg)
{
	long me = (long)arg;
	pthread_mutex_lock(&lock);
	while (turn < rounds) {
		while (turn < rounds && turn % 2 != me)
			pthread_cond_wait(&changed, &lock);
		if (turn < rounds) {
			turn++;
			pthread_cond_broadcast(&changed);
		}
	}
	pthread_mutex_unlock(&lock);
	return NULL;
}

int main(int argc, char **argv)
{
	rounds = argc > 1 ? atol(argv[1]) : 10000;
	pthread_t a, b;
	pthread_create(&a, NULL, player, (void *)0L);
	pthread_create(&b, NULL, player, (void *)1L);
	pthread_join(a, NULL);
	pthread_join(b, NULL);
	printf("%ld hand-overs\n", turn);
	return 0;
}
