/* Prints "ready" and then blocks, for the Ctrl-C tests:
 *   sleep_forever read:  blocks in read() on stdin; on end of input prints
 *                        "eof" and exits 0.
 *   sleep_forever pause: blocks in pause() for ever. */
#include <signal.h>
#include "warptest.h"

int main(int argc, char **argv)
{
	CHECK(argc == 2);
	int use_read = strcmp(argv[1], "read") == 0;
	CHECK(use_read || strcmp(argv[1], "pause") == 0);
	CHECK(signal(SIGINT, SIG_DFL) != SIG_ERR);
	puts("ready");
	fflush(stdout);
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
