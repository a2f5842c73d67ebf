/* Forks up to 10 children that wait on a pipe, stopping at the first fork
 * that fails; then lets them go and reaps them. Prints how many forks
 * succeeded and how the next one failed. */
#include <sys/wait.h>
#include "warptest.h"

int main(void)
{
	int p[2];
	if (pipe(p) != 0)
		return 2;
	int n = 0;
	int err = 0;
	for (; n < 10; n++) {
		pid_t k = fork();
		if (k == 0) {
			char c;
			close(p[1]);
			read(p[0], &c, 1);
			_exit(0);
		}
		if (k < 0) {
			err = errno;
			break;
		}
	}
	close(p[1]);
	int reaped = 0;
	while (wait(NULL) > 0)
		reaped++;
	printf("forked %d, %s; reaped %d\n", n, err ? errname(err) : "no failure", reaped);
	return 0;
}
