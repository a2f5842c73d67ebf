/* Writes to a pipe whose read end is closed.
 *   sigpipe default: SIGPIPE kills the program, status 141.
 *   sigpipe ignore:  write fails with EPIPE, exit 0. */
#include <signal.h>
#include "warptest.h"

int main(int argc, char **argv)
{
	CHECK(argc == 2);
	int ignore = strcmp(argv[1], "ignore") == 0;
	CHECK(ignore || strcmp(argv[1], "default") == 0);
	/* Do not depend on what the caller left SIGPIPE as. */
	CHECK(signal(SIGPIPE, ignore ? SIG_IGN : SIG_DFL) != SIG_ERR);
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGPIPE);
	CHECK(sigprocmask(SIG_UNBLOCK, &set, NULL) == 0);

	int p[2];
	CHECK(pipe(p) == 0);
	CHECK(close(p[0]) == 0);
	printf("writing to a pipe with no reader (%s)\n", argv[1]);
	fflush(stdout);
	errno = 0;
	ssize_t r = write(p[1], "x", 1);
	printf("write = %zd %s\n", r, errname(errno));
	puts("EXIT-SUCCESS");
	return 0;
}
